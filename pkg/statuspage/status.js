(function () {
  "use strict";
  var every = (parseFloat(document.body.getAttribute("data-refresh")) || 2) * 1000;
  var live = document.getElementById("live");
  var loaded = Date.now();
  function rate(r) {
    if (r === null || r === undefined) return "\u2013";
    return (r !== 0 && r < 0.1 ? r.toFixed(3) : r.toFixed(1)) + "/s";
  }
  function collect(v, nums) {
    if (Array.isArray(v)) { v.forEach(function (x) { collect(x, nums); }); return; }
    if (v === null || typeof v !== "object") return;
    if (typeof v.metric === "string" && typeof v.selector === "string" && typeof v.value === "number") {
      nums[v.metric + v.selector] = v;
    }
    Object.keys(v).forEach(function (k) { collect(v[k], nums); });
  }
  function update(p) {
    var nums = {}, shown = {};
    collect(p, nums);
    document.querySelectorAll("[data-metric]").forEach(function (el) {
      var key = el.getAttribute("data-metric") + el.getAttribute("data-labels");
      var n = nums[key];
      if (!n) return;
      shown[key] = true;
      el.setAttribute("data-value", String(n.value));
      el.textContent = String(n.value);
    });
    document.querySelectorAll("[data-rate-metric]").forEach(function (el) {
      var n = nums[el.getAttribute("data-rate-metric") + el.getAttribute("data-rate-labels")];
      if (n) el.textContent = rate(n.rate_per_second);
    });
    // A number the page lacks is a new rule, policy or source: load the
    // page again (at most every 10 s) rather than build its rows here.
    for (var key in nums) {
      if (!shown[key] && Date.now() - loaded > 10000) { location.reload(); return; }
    }
    var body = document.getElementById("topkeys-body");
    var rows = document.createDocumentFragment();
    (p.top_keys || []).forEach(function (k) {
      var tr = document.createElement("tr");
      var keys = k.keys.join(", ") + (k.more_keys ? " +" + k.more_keys : "");
      [[k.domain, true], [keys, true], [k.hash, true], [k.rule + (k.shadow ? " (shadow)" : ""), true],
       [String(k.over_limit), false], [String(k.max_error), false]].forEach(function (c, i) {
        var td = document.createElement("td");
        if (c[1]) { var code = document.createElement("code"); code.textContent = c[0]; td.appendChild(code); }
        else { td.className = "n"; td.textContent = c[0]; }
        if (i === 4) { td.setAttribute("data-topkey", k.hash); td.setAttribute("data-value", String(k.over_limit)); }
        tr.appendChild(td);
      });
      rows.appendChild(tr);
    });
    document.getElementById("topkeys-seen").textContent = String(p.top_keys_seen);
    if (rows.childNodes.length) { body.textContent = ""; body.appendChild(rows); }
    var g = document.getElementById("generated");
    g.setAttribute("datetime", p.generated);
    g.textContent = p.generated;
    document.getElementById("window").textContent = p.rate_window_seconds ? Math.round(p.rate_window_seconds) + " s" : "\u2013 (no sample yet)";
    document.body.className = "";
    live.textContent = "Live: updated every " + every / 1000 + " s.";
  }
  function tick() {
    fetch("status.json", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(update)
      .catch(function (e) {
        document.body.className = "stale";
        live.textContent = "Live update failed (" + e.message + "); the numbers may be old.";
      })
      .then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();
