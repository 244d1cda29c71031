// The console's live updates: every element marked data-live is reloaded (htmx) every few seconds, at an
// interval the user picks; never while the tab is hidden or the refresh is paused. And the "Local time" switch.
(function () {
  "use strict";
  var select = document.getElementById("refresh-interval");
  var pause = document.getElementById("refresh-pause");
  var zone = document.getElementById("time-zone");
  var status = document.getElementById("refresh-status");
  var timer = null;
  var paused = localStorage.getItem("sosw.paused") === "1";
  var saved = localStorage.getItem("sosw.refresh");
  if (saved && select.querySelector('option[value="' + saved + '"]')) { select.value = saved; }

  function live() { return document.querySelectorAll("[data-live]"); }

  function tick() {
    if (paused || document.hidden) { return; }
    live().forEach(function (el) { htmx.trigger(el, "sosw-refresh"); });
  }

  function schedule() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    var on = !paused && !document.hidden && live().length > 0;
    if (on) { timer = setInterval(tick, Number(select.value) * 1000); }
    document.body.dataset.refresh = on ? "on" : "off";
    pause.setAttribute("aria-pressed", paused ? "true" : "false");
    pause.textContent = paused ? "Resume" : "Pause";
    status.textContent = live().length === 0 ? "" : paused ? "Refresh paused" : (document.hidden ? "" : "Refreshing every " + select.value + " s");
  }

  select.addEventListener("change", function () { localStorage.setItem("sosw.refresh", select.value); schedule(); });
  pause.addEventListener("click", function () { paused = !paused; localStorage.setItem("sosw.paused", paused ? "1" : "0"); schedule(); });
  document.addEventListener("visibilitychange", schedule);

  var local = localStorage.getItem("sosw.localTime") === "1";
  function showTimes() {
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var utc = el.getAttribute("datetime");
      if (!utc || utc === "-") { return; }
      el.textContent = local ? new Date(utc).toLocaleString() : utc;
      el.title = local ? utc : "";
    });
    zone.setAttribute("aria-pressed", local ? "true" : "false");
  }
  zone.addEventListener("click", function () { local = !local; localStorage.setItem("sosw.localTime", local ? "1" : "0"); showTimes(); });
  document.body.addEventListener("htmx:afterSwap", showTimes);
  showTimes();
  schedule();
})();
