// agentgen report: filters, keyboard navigation, theme switch and the lazy token view.
// Everything from data is set through textContent / setAttribute, never as HTML.
(function () {
  "use strict";
  var root = document.documentElement;
  var themes = ["auto", "light", "dark"];
  var themeBtn = document.getElementById("theme");
  function setTheme(t) { root.setAttribute("data-theme", t); if (themeBtn) themeBtn.textContent = "theme: " + t; }
  setTheme("auto");
  function nextTheme() { var i = themes.indexOf(root.getAttribute("data-theme")); setTheme(themes[(i + 1) % themes.length]); }
  if (themeBtn) themeBtn.addEventListener("click", nextTheme);

  var items = Array.prototype.slice.call(document.querySelectorAll("details.traj"));
  var text = new Map();
  function haystack(el) {
    if (!text.has(el)) text.set(el, el.textContent.toLowerCase());
    return text.get(el);
  }
  function val(id) { var e = document.getElementById(id); return e ? e.value : ""; }
  function applyFilters() {
    var q = val("q").trim().toLowerCase();
    var fam = val("f-family"), split = val("f-split"), code = val("f-code");
    var rmin = parseFloat(val("f-rmin")), rmax = parseFloat(val("f-rmax"));
    var shown = 0;
    items.forEach(function (el) {
      var d = el.dataset, r = parseFloat(d.reward);
      var ok = (!fam || d.family === fam) && (!split || d.split === split) && (!code || d.code === code)
        && (isNaN(rmin) || (!isNaN(r) && r >= rmin)) && (isNaN(rmax) || (!isNaN(r) && r <= rmax))
        && (!q || haystack(el).indexOf(q) >= 0);
      el.classList.toggle("hidden", !ok);
      if (ok) shown++;
    });
    var s = document.getElementById("shown");
    if (s) s.textContent = "showing " + shown + " of " + items.length;
  }
  ["q", "f-family", "f-split", "f-code", "f-rmin", "f-rmax"].forEach(function (id) {
    var e = document.getElementById(id);
    if (e) e.addEventListener("input", applyFilters);
  });
  applyFilters();

  function renderTokens(det) {
    var i = det.getAttribute("data-for");
    var box = document.getElementById("tv" + i), src = document.getElementById("tok" + i);
    if (!box || !src || box.getAttribute("data-done")) return;
    var data = JSON.parse(src.textContent);
    var frag = document.createDocumentFragment();
    var legend = document.createElement("span");
    legend.className = "legend";
    legend.textContent = "highlighted = trained (loss mask 1); plain = prompt / not trained" + (data.l ? "; hover a token for its logprob" : "");
    frag.appendChild(legend);
    for (var k = 0; k < data.t.length; k++) {
      var sp = document.createElement("span");
      var trained = data.m.charAt(k) === "1";
      if (trained) sp.className = "m1";
      sp.textContent = data.t[k];
      var tip = "token " + k + (trained ? " · trained" : " · not trained");
      if (data.l) tip += data.l[k] === null || data.l[k] === undefined ? " · no logprob" : " · logprob " + data.l[k];
      sp.setAttribute("title", tip);
      frag.appendChild(sp);
    }
    box.appendChild(frag);
    box.setAttribute("data-done", "1");
  }
  document.querySelectorAll("details.tokens").forEach(function (det) {
    det.addEventListener("toggle", function () { if (det.open) renderTokens(det); });
  });

  function visible() { return items.filter(function (el) { return !el.classList.contains("hidden"); }); }
  function current() {
    var a = document.activeElement;
    return a && a.closest ? a.closest("details.traj") : null;
  }
  document.addEventListener("keydown", function (ev) {
    var t = ev.target, tag = t && t.tagName;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
      if (ev.key === "Escape") t.blur();
      return;
    }
    var list = visible(), cur = current(), idx = cur ? list.indexOf(cur) : -1;
    if (ev.key === "/") { ev.preventDefault(); var q = document.getElementById("q"); if (q) q.focus(); }
    else if (ev.key === "j" || ev.key === "k") {
      if (!list.length) return;
      var n = ev.key === "j" ? Math.min(idx + 1, list.length - 1) : Math.max(idx - 1, 0);
      var s = list[n].querySelector("summary");
      s.focus(); s.scrollIntoView({ block: "nearest" });
      ev.preventDefault();
    } else if (ev.key === "o" && cur) { cur.open = !cur.open; ev.preventDefault(); }
    else if (ev.key === "t") { nextTheme(); }
  });
})();
