/* Store Companion storefront snippet: events, cart, checkout contact, sign-up forms, web push. Plain JS, no dependencies.
 * Load with: <script async src="https://SERVICE/s/snippet.js" data-key="SHOP_PUBLIC_KEY"></script>
 * Cookie banners call window.StoreCompanion.consent(true|false); before this script loads they may set
 * window.StoreCompanionConsent = true|false instead. Every entry point is wrapped: a failure here never
 * reaches the page, and an unreachable service only means nothing is recorded. */
(function (w, d) {
  "use strict";
  function noop() {}
  function g(f) { return function () { try { return f.apply(this, arguments); } catch (e) { return undefined; } }; }
  if (w.__storeCompanion) return;
  w.__storeCompanion = 1;

  var script = d.currentScript || d.querySelector('script[src*="/s/snippet.js"]');
  if (!script) return;
  var src = new URL(script.src, location.href);
  var API = src.origin + "/s";
  var KEY = script.getAttribute("data-key") || src.searchParams.get("k");
  if (!KEY) return;
  var S = w.StoreCompanion = w.StoreCompanion || {};
  var fetch0 = w.fetch;
  var EMAIL = /^[^@\s"<>(),;:]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/;
  var DAY = 864e5;
  var cfg = null, queue = [], platform = "", lastContact = "", popupOpen = false;

  function store() { try { return w.localStorage; } catch (e) { return null; } }
  function get(k) { try { return store().getItem("sc_" + k); } catch (e) { return null; } }
  function set(k, v) { try { if (v == null) store().removeItem("sc_" + k); else store().setItem("sc_" + k, String(v)); } catch (e) { noop(); } }
  function now() { return Date.now(); }
  function endpoint(path) { return API + path + "?k=" + encodeURIComponent(KEY); }
  function newId() {
    var a = new Uint8Array(16), s = "";
    w.crypto.getRandomValues(a);
    for (var i = 0; i < a.length; i++) s += ("0" + a[i].toString(16)).slice(-2);
    return s;
  }
  // The anonymous visitor id is stored only once tracking is allowed, and forgotten when consent is withdrawn.
  var visitor = get("vid");
  if (visitor && !/^[A-Za-z0-9_-]{16,64}$/.test(visitor)) visitor = null;
  function ensureVisitor() {
    if (!visitor) { visitor = newId(); set("vid", visitor); }
    return visitor;
  }

  // --- privacy: the banner's choice, then the shop's Do Not Track / Global Privacy Control setting ----------
  var consent = get("consent");
  if (typeof w.StoreCompanionConsent === "boolean") consent = w.StoreCompanionConsent ? "1" : "0";
  function allowed() {
    if (!cfg || consent === "0") return false;
    if (consent === "1") return true;
    if (cfg.require_consent) return false;
    var n = w.navigator;
    return !(cfg.honor_dnt && (n.doNotTrack === "1" || w.doNotTrack === "1" || n.globalPrivacyControl === true));
  }
  S.consent = g(function (granted) {
    consent = granted ? "1" : "0";
    set("consent", consent);
    if (granted) {
      if (cfg) { ensureVisitor(); start(); }
    } else {
      queue.length = 0;
      visitor = null;
      set("vid", null);
      set("cart_q", null);
      set("cart_sig", null);
    }
  });
  S.visitorId = function () { return visitor; };

  // --- transport: never throws, never rejects; events leave in sendBeacon batches -----------------------
  function send(path, body, method) {
    if (!fetch0) return Promise.resolve(null);
    try {
      return fetch0.call(w, endpoint(path), {
        method: method || "POST", body: JSON.stringify(body), keepalive: true, credentials: "omit", mode: "cors",
        headers: { "Content-Type": "text/plain;charset=UTF-8" }
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) { j.status_code = r.status; return j; });
      }).catch(function () { return null; });
    } catch (e) { return Promise.resolve(null); }
  }
  function flush() {
    if (!queue.length || !allowed() || !visitor) return;
    // Batches stay well under sendBeacon's 64 KB and the service's body cap; an event too big alone is dropped.
    var batch = [], size = 0, one;
    while (queue.length && batch.length < 50) {
      one = JSON.stringify(queue[0]).length;
      if (one > 40000) { queue.shift(); continue; }
      if (size + one > 40000) break;
      batch.push(queue.shift());
      size += one + 1;
    }
    if (!batch.length) return;
    var body = JSON.stringify({ visitor_id: visitor, events: batch });
    var sent = false;
    try { sent = navigator.sendBeacon && navigator.sendBeacon(endpoint("/events"), body); } catch (e) { sent = false; }
    if (!sent && fetch0) { try { fetch0.call(w, endpoint("/events"), { method: "POST", body: body, keepalive: true, credentials: "omit" }).catch(noop); } catch (e) { noop(); } }
    if (queue.length) flush();
  }
  function track(type, extra) {
    var e = { type: type, url: location.href.slice(0, 2000), ts: now() }, k;
    for (k in extra) if (extra[k] != null && extra[k] !== "") e[k] = extra[k];
    queue.push(e);
    if (queue.length >= 20) flush();
  }
  S.flush = g(flush);

  // --- what is on the page -------------------------------------------------------------------------------
  function text(sel) { var el = d.querySelector(sel); return el ? (el.textContent || "").trim().slice(0, 500) : null; }
  function productOnPage() {
    var el = d.querySelector("[data-sc-product-id]");
    if (el) return { product_id: el.getAttribute("data-sc-product-id"), title: el.getAttribute("data-sc-title") || text("h1") };
    var m = w.ShopifyAnalytics && w.ShopifyAnalytics.meta && w.ShopifyAnalytics.meta.product;
    if (m && m.id) return { product_id: String(m.id), title: text("h1") };
    if (d.body && d.body.classList.contains("single-product")) {
      var b = d.querySelector('[name="add-to-cart"]');
      if (b && b.value) return { product_id: String(b.value), title: text(".product_title") };
    }
    return null;
  }

  // --- the cart, read from the platform's own storefront API when it may have changed ------------------
  var CART_WRITE = /\/cart\/(add|change|update|clear)|wc\/store(\/v1)?\/(cart\/|batch)|wc-ajax=(add_to_cart|remove_from_cart)|[?&]add-to-cart=/;
  var cartTimer = 0;
  function cartChanged() { clearTimeout(cartTimer); cartTimer = setTimeout(g(readCart), 300); }
  function cartUrl() {
    if (platform === "shopify") return ((w.Shopify && w.Shopify.routes && w.Shopify.routes.root) || "/") + "cart.js";
    return "/wp-json/wc/store/v1/cart";
  }
  function pick(o, keys) {
    var r = {}, i;
    for (i = 0; o && i < keys.length; i++) if (o[keys[i]] != null) r[keys[i]] = o[keys[i]];
    return r;
  }
  function slimCart(c) {
    var items = c.items || [], out = [], i, it, line;
    for (i = 0; i < items.length; i++) {
      it = items[i];
      if (platform === "shopify") {
        out.push(pick(it, ["id", "variant_id", "product_id", "sku", "product_title", "title", "quantity", "price", "final_price", "url", "image"]));
      } else {
        // `variation` holds a variation's chosen options: the recovery link restores "any size" variations exactly.
        line = pick(it, ["id", "quantity", "name", "sku", "permalink", "variation"]);
        line.prices = pick(it.prices, ["price", "currency_minor_unit"]);
        line.images = it.images && it.images[0] ? [{ src: it.images[0].src }] : [];
        out.push(line);
      }
    }
    if (platform === "shopify") return { token: c.token, currency: c.currency, total_price: c.total_price, items: out };
    var b = c.billing_address || {};
    return { totals: pick(c.totals, ["total_price", "currency_code", "currency_minor_unit"]), items: out, billing_address: b.email ? { email: b.email } : {} };
  }
  function readCart() {
    if (!allowed() || !fetch0 || !visitor) return;
    fetch0.call(w, cartUrl(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(g(function (c) {
        if (!c) return;
        var cart = slimCart(c), sig = JSON.stringify(cart), had = get("cart_q"), before = {}, after = {}, i, it, key, q;
        try { before = JSON.parse(had || "{}") || {}; } catch (e) { before = {}; }
        for (i = 0; i < cart.items.length; i++) {
          it = cart.items[i];
          key = String(it.variant_id || it.id);
          q = +it.quantity || 0;
          after[key] = q;
          if (had !== null && q > (before[key] || 0)) {
            track("add_to_cart", { product_id: String(it.product_id || it.id), variant_id: it.variant_id ? String(it.variant_id) : null,
              quantity: q - (before[key] || 0), title: it.product_title || it.title || it.name,
              price: typeof it.final_price === "number" ? it.final_price : typeof it.price === "number" ? it.price : null });
          }
        }
        set("cart_q", JSON.stringify(after));
        flush();
        if (sig === get("cart_sig")) return;
        send("/cart", { visitor_id: visitor, cart: cart }).then(function (r) { if (r && r.status_code === 202) set("cart_sig", sig); });
      }))["catch"](noop);
  }
  function watchCart() {
    if (fetch0) {
      w.fetch = function (input) {
        var p = fetch0.apply(w, arguments);
        try {
          var u = typeof input === "string" ? input : (input && input.url) || String(input);
          if (CART_WRITE.test(u)) p.then(cartChanged, noop);
        } catch (e) { noop(); }
        return p;
      };
    }
    var X = w.XMLHttpRequest && w.XMLHttpRequest.prototype, open0 = X && X.open;
    if (open0) {
      X.open = function (m, u) {
        try { if (CART_WRITE.test(String(u))) this.addEventListener("loadend", cartChanged); } catch (e) { noop(); }
        return open0.apply(this, arguments);
      };
    }
    if (w.jQuery) { try { w.jQuery(d.body).on("added_to_cart removed_from_cart updated_cart_totals", cartChanged); } catch (e) { noop(); } }
    d.addEventListener("visibilitychange", g(function () { if (d.visibilityState === "visible") cartChanged(); else flush(); }));
  }

  // --- the email or phone typed at checkout, sent when the field loses focus ------------------------------
  function atCheckout() {
    return /checkout|kasa|zamowienie|finalizare|comanda/i.test(location.pathname) ||
      !!d.querySelector("form.checkout, form.woocommerce-checkout, [data-sc-checkout]");
  }
  function onBlur(e) {
    var t = e.target;
    if (!t || t.tagName !== "INPUT" || !allowed() || !visitor || !atCheckout()) return;
    var type = (t.type || "").toLowerCase(), hint = (t.name + " " + t.id + " " + (t.autocomplete || "")).toLowerCase();
    var value = (t.value || "").trim(), body = { visitor_id: visitor };
    if (!value) return;
    if (type === "email" || /e-?mail/.test(hint)) {
      if (!EMAIL.test(value)) return;
      body.email = value;
    } else if (type === "tel" || /phone|tel/.test(hint)) {
      if (value.replace(/\D/g, "").length < 9) return;
      body.phone = value;
    } else return;
    if (value === lastContact) return;
    lastContact = value;
    send("/contact", body);
  }

  // --- sign-up forms: embedded, timed pop-up, exit-intent pop-up --------------------------------------------
  var CSS = ".sc-ov{position:fixed;inset:0;background:#0008;display:flex;align-items:center;justify-content:center;z-index:2147483000}" +
    ".sc-box{background:#fff;color:#222;max-width:26rem;width:90%;padding:1.5rem;border-radius:8px;position:relative;font:16px/1.4 system-ui,sans-serif;box-sizing:border-box}" +
    ".sc-box h2{margin:0 0 .5rem}.sc-box label{display:block;margin:.5rem 0 .25rem}.sc-box input[type=email]{width:100%;padding:.5rem;font:inherit}" +
    ".sc-c{display:flex;gap:.5rem;font-size:.85rem}.sc-go{margin-top:.75rem;padding:.6rem 1rem;background:#222;color:#fff;border:0;border-radius:4px;font:inherit}" +
    ".sc-x{position:absolute;top:.5rem;right:.5rem;background:none;border:0;font-size:1.4rem}.sc-m{min-height:1.2em;font-size:.9rem}.sc-push{position:fixed;left:1rem;bottom:1rem;z-index:2147483000;max-width:22rem}";
  function styles() {
    if (d.getElementById("sc-css")) return;
    var s = el("style", { id: "sc-css" });
    s.textContent = CSS;
    add(d.head, s);
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function el(tag, attrs, txt) {
    var e = d.createElement(tag), k;
    for (k in attrs) e.setAttribute(k, attrs[k]);
    if (txt != null) e.textContent = txt;
    return e;
  }
  function recentlyShown(f) {
    var r = get("form_" + f.id);
    return r === "done" || (r && now() - +r < (f.frequency_days || 7) * DAY);
  }
  function buildForm(f, onDone) {
    var t = f.texts, id = "sc-" + f.id.replace(/[^A-Za-z0-9_-]/g, "") + "-" + Math.random().toString(36).slice(2, 7);
    var box = el("div", { "class": "sc-box", "data-sc-form": f.id });
    var h = el("h2", { id: id + "-t" }, t.title), form = el("form", { novalidate: "" });
    var input = el("input", { id: id + "-e", type: "email", name: "email", autocomplete: "email", required: "" });
    var check = el("input", { id: id + "-c", type: "checkbox", name: "consent", required: "" });
    var msg = el("p", { "class": "sc-m", role: "status", "aria-live": "polite" });
    var row = el("div", { "class": "sc-c" });
    add(row, check);
    add(row, el("label", { "for": id + "-c", "data-consent-version": f.consent_version }, t.consent));
    add(box, h);
    add(box, el("p", { id: id + "-d" }, t.body));
    add(form, el("label", { "for": id + "-e" }, t.email_label));
    add(form, input);
    add(form, row);
    add(form, msg);
    add(form, el("button", { type: "submit", "class": "sc-go" }, t.button));
    add(box, form);
    form.addEventListener("submit", g(function (e) {
      e.preventDefault();
      var email = input.value.trim();
      if (!EMAIL.test(email)) { msg.textContent = t.invalid_email; input.focus(); return; }
      if (!check.checked) { msg.textContent = t.consent_required; check.focus(); return; }
      var body = { form_id: f.id, email: email, consent: true, consent_text_version: f.consent_version, locale: cfg.locale };
      if (allowed() && visitor) body.visitor_id = visitor;
      send("/signup", body).then(g(function (r) {
        if (r && r.status_code === 202) {
          set("form_" + f.id, "done");
          form.parentNode.removeChild(form);
          add(box, el("p", { "class": "sc-m", role: "status", "data-sc-done": "" }, t.success));
          if (onDone) onDone();
        } else { msg.textContent = t.error; }
      }));
    }));
    return { box: box, input: input, titleId: id + "-t", descId: id + "-d" };
  }
  function openPopup(f) {
    if (popupOpen || recentlyShown(f)) return;
    popupOpen = true;
    set("form_" + f.id, now());
    styles();
    var before = d.activeElement, built = buildForm(f), box = built.box, ov = el("div", { "class": "sc-ov" });
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "true");
    box.setAttribute("aria-labelledby", built.titleId);
    box.setAttribute("aria-describedby", built.descId);
    var x = el("button", { type: "button", "class": "sc-x", "aria-label": f.texts.close }, "\u00d7");
    box.insertBefore(x, box.firstChild);
    add(ov, box);
    function close() {
      if (!ov.parentNode) return;
      ov.parentNode.removeChild(ov);
      d.removeEventListener("keydown", keys, true);
      popupOpen = false;
      try { if (before && before.focus) before.focus(); } catch (e) { noop(); }
    }
    function keys(e) {
      if (e.key === "Escape") { e.preventDefault(); close(); return; }
      if (e.key !== "Tab") return;
      var f = box.querySelectorAll("button, input, a[href], select, textarea"), first = f[0], last = f[f.length - 1];
      if (e.shiftKey && d.activeElement === first) { e.preventDefault(); last.focus(); } else if (!e.shiftKey && d.activeElement === last) { e.preventDefault(); first.focus(); } else if (!box.contains(d.activeElement)) { e.preventDefault(); first.focus(); }
    }
    x.addEventListener("click", g(close));
    ov.addEventListener("click", g(function (e) { if (e.target === ov) close(); }));
    d.addEventListener("keydown", g(keys), true);
    add(d.body, ov);
    built.input.focus();
  }
  S.openForm = g(function (id) {
    for (var i = 0; cfg && i < cfg.forms.length; i++) if (cfg.forms[i].id === id) { set("form_" + id, null); openPopup(cfg.forms[i]); }
  });
  function embed(f) {
    var spots = d.querySelectorAll('[data-store-companion-form="' + f.id + '"]');
    if (!spots.length || get("form_" + f.id) === "done") return;
    styles();
    for (var i = 0; i < spots.length; i++) add(spots[i], buildForm(f).box);
  }
  function exitIntent(f) {
    var fired = false, armed = false, lastY = w.scrollY, lastT = now(), maxY = 0;
    function fire() { if (!fired && armed) { fired = true; openPopup(f); } }
    setTimeout(function () { armed = true; }, (f.arm_seconds != null ? f.arm_seconds : 3) * 1000);
    d.addEventListener("mouseout", g(function (e) {
      if (!e.relatedTarget && e.clientY <= 0) fire();
    }));
    // Touch screens have no pointer to leave the window: a quick scroll back up after reading down stands in for it.
    if (w.matchMedia && w.matchMedia("(pointer: coarse)").matches) {
      w.addEventListener("scroll", g(function () {
        var y = w.scrollY, t = now(), dy = y - lastY, dt = Math.max(1, t - lastT);
        maxY = Math.max(maxY, y);
        if (maxY > 400 && dy < -80 && dy / dt < -1) fire();
        lastY = y; lastT = t;
      }), { passive: true });
    }
  }
  function setUpForms() {
    var forms = cfg.forms || [], i, f;
    for (i = 0; i < forms.length; i++) {
      f = forms[i];
      if (f.type === "embedded") embed(f);
      else if (recentlyShown(f)) continue;
      else if (f.type === "timed") setTimeout(g(openPopup.bind(null, f)), (f.delay_seconds != null ? f.delay_seconds : 15) * 1000);
      else if (f.type === "exit_intent") exitIntent(f);
    }
  }

  // --- web push: our own soft prompt first, the browser's permission request only after a yes ----------------
  function swPath(p) { return p.sw_path || (platform === "shopify" ? "/apps/store-companion/sw.js" : "/?store_companion_sw=1"); }
  function keyBytes(b64) {
    var s = atob((b64 + "===".slice((b64.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/")), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function activeReg(reg) {
    if (reg.active) return Promise.resolve(reg);
    return new Promise(function (ok) {
      var sw = reg.installing || reg.waiting;
      if (!sw) return ok(reg);
      sw.addEventListener("statechange", function () { if (sw.state === "activated") ok(reg); });
    });
  }
  function postSubscription(sub, p) {
    var j = sub.toJSON ? sub.toJSON() : sub, old = get("push_ep");
    if (old && old !== j.endpoint) send("/push-subscription", { visitor_id: visitor, endpoint: old }, "DELETE");
    return send("/push-subscription", { visitor_id: visitor, subscription: { endpoint: j.endpoint, keys: j.keys }, consent_text_version: p.consent_version })
      .then(function (r) { if (r && r.status_code === 202) set("push_ep", j.endpoint); return r; });
  }
  function subscribePush(p) {
    return navigator.serviceWorker.register(swPath(p)).then(activeReg).then(function (reg) {
      return reg.pushManager.getSubscription().then(function (s) {
        return s || reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(p.vapid_public_key) });
      });
    }).then(function (sub) { return postSubscription(sub, p); })["catch"](noop);
  }
  function dropPush() {
    var old = get("push_ep");
    if (old) { set("push_ep", null); send("/push-subscription", { visitor_id: visitor, endpoint: old }, "DELETE"); }
  }
  function checkPush(p) {
    // The visitor may have revoked permission or cleared the subscription in the browser since last time.
    var sw = navigator.serviceWorker;
    (sw.getRegistration ? sw.getRegistration(swPath(p)) : Promise.resolve(null)).then(function (reg) {
      return reg ? reg.pushManager.getSubscription() : null;
    }).then(function (sub) {
      if (!sub) dropPush();
      else if (sub.endpoint !== get("push_ep")) postSubscription(sub, p);
    })["catch"](noop);
  }
  function softPrompt(p) {
    if (popupOpen || d.getElementById("sc-push")) return;
    styles();
    set("push_asked", now());
    var t = p.texts, box = el("div", { id: "sc-push", "class": "sc-box sc-push", role: "dialog", "aria-labelledby": "sc-push-t", "aria-describedby": "sc-push-d" });
    var yes = el("button", { type: "button", "class": "sc-go" }, t.allow), no = el("button", { type: "button", "class": "sc-go", style: "background:#777;margin-left:.5rem" }, t.deny);
    add(box, el("h2", { id: "sc-push-t" }, t.title));
    add(box, el("p", { id: "sc-push-d", "data-consent-version": p.consent_version }, t.body));
    add(box, yes);
    add(box, no);
    function close() { if (box.parentNode) box.parentNode.removeChild(box); }
    no.addEventListener("click", g(close));
    box.addEventListener("keydown", g(function (e) { if (e.key === "Escape") close(); }));
    yes.addEventListener("click", g(function () {
      close();
      var asked = w.Notification.requestPermission();
      (asked && asked.then ? asked : Promise.resolve(asked)).then(function (res) {
        if (res === "granted") return subscribePush(p);
      })["catch"](noop);
    }));
    add(d.body, box);
    yes.focus();
  }
  function setUpPush() {
    var p = cfg.push;
    if (!p || !("serviceWorker" in navigator) || !("PushManager" in w) || !w.Notification || !allowed()) return;
    var perm = w.Notification.permission;
    if (perm === "granted") return checkPush(p);
    if (perm === "denied") return dropPush();
    var asked = +get("push_asked") || 0;
    if (now() - asked < 7 * DAY) return;
    setTimeout(g(function () { softPrompt(p); }), (p.delay_seconds || 0) * 1000);
  }

  // --- start ---------------------------------------------------------------------------------------------
  var started = false;
  function start() {
    if (started || !allowed()) return;
    started = true;
    ensureVisitor();
    track("page_view", { referrer: d.referrer ? d.referrer.slice(0, 2000) : null, title: (d.title || "").slice(0, 500) });
    var prod = productOnPage();
    if (prod && prod.product_id) track("product_view", prod);
    flush();
    watchCart();
    // WooCommerce's thank-you page: the open cart was bought, so it must not be chased as abandoned.
    var bought = platform === "woocommerce" && /order-received\/(\d+)/.exec(location.pathname);
    if (bought) {
      send("/cart", { visitor_id: visitor, order_id: bought[1] });
      set("cart_sig", null);
      set("cart_q", "{}");
    } else readCart();
    d.addEventListener("focusout", g(onBlur), true);
    setUpPush();
  }
  function init() {
    if (!fetch0) return;
    var lang = (d.documentElement.getAttribute("lang") || "").slice(0, 2);
    fetch0.call(w, endpoint("/config") + (lang ? "&l=" + encodeURIComponent(lang) : ""), { credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(g(function (c) {
        if (!c) return;
        cfg = c;
        platform = c.platform;
        setUpForms();
        start();
        S.ready = true;
      }))["catch"](noop);
    w.addEventListener("pagehide", g(flush));
    setInterval(g(flush), 5000);
  }
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", g(init)); else g(init)();
})(window, document);
