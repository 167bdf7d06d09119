// "Use seed" on an image (the lightbox of every gallery, the image's page): the studio's
// seed field takes it, on this page when it has the form, else on the next studio page
// this tab opens. Seeds go up to 2**64 - 1, past what a JS number holds: kept as text.
(function () {
  "use strict";
  const KEPT = "studio:use-seed";

  function fill(seed) {
    const input = document.querySelector("#generate-form input[name=seed]");
    if (!input) return false;
    input.value = seed;
    const section = input.closest("details");
    if (section) section.open = true;
    return true;
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-use-seed]");
    if (!button || !button.dataset.useSeed) return;
    const seed = button.dataset.useSeed;
    const dialog = button.closest("dialog");
    if (dialog && document.getElementById("generate-form")) dialog.close();
    if (fill(seed)) {
      document.querySelector("#generate-form input[name=seed]").focus();
      return;
    }
    sessionStorage.setItem(KEPT, seed);
    button.textContent = "Kept for the studio";
  });

  const kept = sessionStorage.getItem(KEPT);
  if (kept !== null && fill(kept)) sessionStorage.removeItem(KEPT);
})();
