/* Store Companion service worker: shows web push notifications and reports a replaced subscription.
 * Served from the shop's own domain by a one-line stub that sets self.STORE_COMPANION = {key, api} and
 * importScripts() this file (WordPress plugin), or whole through the Shopify app proxy. */
(function (self) {
  "use strict";
  var conf = self.STORE_COMPANION || {};

  self.addEventListener("install", function () { self.skipWaiting(); });
  self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

  self.addEventListener("push", function (event) {
    var data = {};
    try { data = event.data ? event.data.json() : {}; } catch (e) { data = { body: event.data ? event.data.text() : "" }; }
    event.waitUntil(self.registration.showNotification(data.title || "", {
      body: data.body || "", icon: data.icon, image: data.image, badge: data.badge, tag: data.tag,
      data: { url: data.url || "/" }
    }));
  });

  self.addEventListener("notificationclick", function (event) {
    event.notification.close();
    var url = (event.notification.data && event.notification.data.url) || "/";
    event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (list) {
      for (var i = 0; i < list.length; i++) if (list[i].url === url && list[i].focus) return list[i].focus();
      return self.clients.openWindow ? self.clients.openWindow(url) : null;
    }));
  });

  // The browser dropped or replaced the subscription: retire the old endpoint now. The snippet posts the new
  // one on the visitor's next page view, with the consent wording it was given under (which only the page knows).
  self.addEventListener("pushsubscriptionchange", function (event) {
    var old = event.oldSubscription;
    if (!conf.key || !conf.api || !old) return;
    event.waitUntil(fetch(conf.api + "/s/push-subscription?k=" + encodeURIComponent(conf.key), {
      method: "DELETE", headers: { "Content-Type": "text/plain;charset=UTF-8" },
      body: JSON.stringify({ visitor_id: conf.visitor || "serviceworker00000000", endpoint: old.endpoint })
    }).catch(function () {}));
  });
})(self);
