// On a phone the studio is one column: once Generate is accepted, bring the canvas (where
// the progress and the result show) into view instead of leaving it above the form.
(function () {
  "use strict";
  const stage = document.getElementById("canvas-stage");
  if (!stage) return;

  // Before the swap: the form that sent the request is still in the page to hear it.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    const form = event.detail.elt;
    if (!form || form.id !== "generate-form" || event.detail.xhr.status >= 300) return;
    const box = stage.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) {
      stage.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  });
})();
