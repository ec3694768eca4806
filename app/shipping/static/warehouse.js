// The print station's small behaviours: select many, batch progress, scan-to-pack focus, confirmations.
(function () {
  "use strict";
  var picks = Array.prototype.slice.call(document.querySelectorAll("input.pick"));
  var all = document.getElementById("select-all");
  var count = document.getElementById("selected-count");
  function recount() { if (count) count.textContent = picks.filter(function (p) { return p.checked; }).length; }
  picks.forEach(function (p) { p.addEventListener("change", recount); });
  if (all) all.addEventListener("change", function () { picks.forEach(function (p) { p.checked = all.checked; }); recount(); });
  recount();

  var form = document.getElementById("print-form");
  if (form) form.addEventListener("submit", function (event) {
    if (!picks.some(function (p) { return p.checked; })) { event.preventDefault(); alert("Select at least one order."); }
  });

  // ZPL only for accounts whose courier prints it.
  var account = document.getElementById("account"), zpl = document.getElementById("zpl-option");
  function allowZpl() {
    var chosen = account.options[account.selectedIndex];
    zpl.disabled = !chosen || chosen.dataset.zpl !== "1";
    if (zpl.disabled && zpl.selected) zpl.parentNode.value = "a4_4up";
  }
  if (account && zpl) { account.addEventListener("change", allowZpl); allowZpl(); }

  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (event) { if (!confirm(f.dataset.confirm)) event.preventDefault(); });
  });

  // A scanner types the number and Enter: keep the field focused so the next parcel can be scanned straight away.
  var scan = document.getElementById("scan");
  if (scan) document.addEventListener("keydown", function (event) {
    var typing = event.target && /INPUT|SELECT|TEXTAREA/.test(event.target.tagName);
    if (!typing && event.key.length === 1) scan.focus();
  });

  var batch = document.getElementById("batch");
  if (!batch) return;
  function show(progress) {
    document.getElementById("status-word").textContent = progress.status;
    document.getElementById("done").textContent = progress.done;
    document.getElementById("failed").textContent = progress.failed;
    document.getElementById("bar").value = progress.done + progress.failed;
    var error = document.getElementById("print-error");
    error.hidden = !progress.print_error; error.textContent = progress.print_error || "";
    var list = document.getElementById("failure-list");
    list.innerHTML = "";
    progress.failures.forEach(function (f) {
      var item = document.createElement("li");
      var strong = document.createElement("strong"); strong.textContent = f.order_number;
      item.appendChild(strong); item.appendChild(document.createTextNode(": " + f.message));
      list.appendChild(item);
    });
    document.getElementById("failures").hidden = progress.failures.length === 0;
    document.getElementById("downloads").hidden = !progress.has_print_file;
  }
  function poll() {
    fetch(batch.dataset.progressUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (progress) {
      show(progress);
      if (!progress.finished) { setTimeout(poll, 1000); return; }
      if (batch.dataset.finished !== "1") { window.location.reload(); return; }  // the shipments table is rendered server-side
    }).catch(function () { setTimeout(poll, 3000); });
  }
  if (batch.dataset.finished !== "1") poll();
  else if (batch.dataset.autoprint === "1" && !document.getElementById("downloads").hidden) {
    window.location.href = batch.dataset.labelsUrl;
  }
})();
