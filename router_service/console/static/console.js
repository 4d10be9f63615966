// Progressive enhancement for the console: every page works without this file.
// - elements with data-refresh-seconds are re-fetched and swapped in place (pausable);
// - buttons with data-copy copy the text of the element they name;
// - a header checkbox selects every dead letter on the page.
"use strict";

(function () {
  function swap(id) {
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return false; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(id);
        var current = document.getElementById(id);
        if (!fresh || !current) { return false; }
        current.replaceWith(document.importNode(fresh, true));
        return fresh.hasAttribute("data-refresh-seconds");
      })
      .catch(function () { return true; });
  }

  function autoRefresh(element) {
    var id = element.id;
    var seconds = parseFloat(element.getAttribute("data-refresh-seconds")) || 5;
    var paused = false;
    var control = document.querySelector('[data-refresh-for="' + id + '"]');
    var toggle = control && control.querySelector(".refresh-toggle");
    var state = control && control.querySelector(".refresh-state");
    function show() {
      if (toggle) { toggle.textContent = paused ? "Resume auto-refresh" : "Pause auto-refresh"; }
      if (state) { state.textContent = paused ? "paused" : "refreshing every " + seconds + " s"; }
    }
    if (toggle) {
      toggle.hidden = false;
      toggle.addEventListener("click", function () { paused = !paused; show(); });
    }
    show();
    function tick() {
      if (paused) { window.setTimeout(tick, seconds * 1000); return; }
      swap(id).then(function (again) {
        if (again) { window.setTimeout(tick, seconds * 1000); }
        else if (state) { state.textContent = ""; }
      });
    }
    window.setTimeout(tick, seconds * 1000);
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(source.textContent).then(function () {
          button.textContent = "Copied";
        });
      });
    });
  }

  function selectAll() {
    document.querySelectorAll("input.select-all").forEach(function (box) {
      box.hidden = false;
      box.addEventListener("change", function () {
        document.querySelectorAll("input.pick").forEach(function (pick) { pick.checked = box.checked; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh-seconds]").forEach(autoRefresh);
    copyButtons();
    selectAll();
  });
})();
