// Outpost dashboard: copy buttons, and relative times kept fresh between
// server renders. No inline script anywhere (the CSP forbids it).
(function () {
  "use strict";
  document.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-copy]");
    if (!b) return;
    var text = b.getAttribute("data-copy");
    var done = function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { b.textContent = "Select and copy"; });
    } else {
      var code = b.previousElementSibling;
      if (code) { var r = document.createRange(); r.selectNodeContents(code); var s = window.getSelection(); s.removeAllRanges(); s.addRange(r); }
      b.textContent = "Press Ctrl+C";
    }
  });
  function rel(t) {
    var d = (Date.now() - t) / 1000, sfx = " ago";
    if (d < 0) { d = -d; sfx = ""; }
    var s;
    if (d < 10) return "just now";
    if (d < 60) s = Math.floor(d) + " s";
    else if (d < 3600) s = Math.floor(d / 60) + " min";
    else if (d < 172800) s = Math.floor(d / 3600) + " h";
    else s = Math.floor(d / 86400) + " days";
    return sfx ? s + sfx : "in " + s;
  }
  setInterval(function () {
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(t)) el.textContent = rel(t);
    });
  }, 15000);
})();
