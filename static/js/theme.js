// Colour theme: dark by default (or whatever <html data-theme> says), light on
// request, remembered in localStorage.
// Safe in <head> (applies the saved theme before first paint) and with `defer`
// (buttons are wired by delegation, so it works whenever the script runs).
(function () {
  "use strict";
  var KEY = "studio-theme";
  var root = document.documentElement;

  function saved() {
    try {
      return localStorage.getItem(KEY);
    } catch (e) {
      return null; // storage disabled (privacy mode, sandboxed frame)
    }
  }

  function label(theme) {
    return theme === "light" ? "Switch to dark theme" : "Switch to light theme";
  }

  function apply(theme) {
    theme = theme === "light" ? "light" : "dark";
    root.setAttribute("data-theme", theme);
    var buttons = document.querySelectorAll("[data-theme-toggle]");
    // The toggle is an icon: its name says what a press does.
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].title = label(theme);
      buttons[i].setAttribute("aria-label", label(theme));
    }
    return theme;
  }

  apply(saved() || root.getAttribute("data-theme"));

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-theme-toggle]");
    if (!button) return;
    var next = apply(root.getAttribute("data-theme") === "light" ? "dark" : "light");
    try {
      localStorage.setItem(KEY, next);
    } catch (e) {
      /* not remembered, still switched */
    }
  });

  // Buttons parsed after this script ran get their state once the DOM is ready.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      apply(root.getAttribute("data-theme"));
    });
  }

  // Keep other open tabs in step.
  window.addEventListener("storage", function (event) {
    if (event.key === KEY) apply(event.newValue);
  });
})();
