// The phone menu (templates/base.html): on narrow screens the nav and account links fold
// into .topbar-menu, which the Menu button opens and Esc, a click elsewhere or following
// a link closes. On wider screens the button is hidden and the menu always shows.
(function () {
  "use strict";
  const toggle = document.querySelector("[data-nav-toggle]");
  if (!toggle) return;
  const menu = document.getElementById(toggle.getAttribute("aria-controls"));

  function setOpen(open) {
    toggle.setAttribute("aria-expanded", String(open));
  }

  function isOpen() {
    return toggle.getAttribute("aria-expanded") === "true";
  }

  toggle.addEventListener("click", function () {
    setOpen(!isOpen());
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && isOpen()) {
      setOpen(false);
      toggle.focus();
    }
  });
  document.addEventListener("click", function (event) {
    if (!isOpen() || toggle.contains(event.target)) return;
    if (!menu.contains(event.target) || event.target.closest("a")) setOpen(false);
  });
})();
