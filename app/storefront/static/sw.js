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

  // The browser replaced the subscription (expiry, key rotation): tell the service so pushes keep arriving.
  self.addEventListener("pushsubscriptionchange", function (event) {
    if (!conf.key || !conf.api) return;
    var base = conf.api + "/s/push-subscription?k=" + encodeURIComponent(conf.key);
    function call(method, body) {
      return fetch(base, { method: method, body: JSON.stringify(body), headers: { "Content-Type": "text/plain;charset=UTF-8" } }).catch(function () {});
    }
    event.waitUntil(self.clients.matchAll({ includeUncontrolled: true }).then(function () {
      var old = event.oldSubscription, fresh = event.newSubscription;
      var visitor = conf.visitor || "sw" + Math.random().toString(36).slice(2, 18) + "000000";
      var jobs = [];
      if (old) jobs.push(call("DELETE", { visitor_id: visitor, endpoint: old.endpoint }));
      if (fresh) {
        var j = fresh.toJSON();
        jobs.push(call("POST", { visitor_id: visitor, subscription: { endpoint: j.endpoint, keys: j.keys }, consent_text_version: conf.consent_version || "renewed" }));
      }
      return Promise.all(jobs);
    }));
  });
})(self);
