// The studio's model menu: a model that runs only some modes (a FLUX.1 Fill model: inpaint
// and outpaint; generation.forms.StudioModelSelect's data-modes, in words) says so under the
// menu and opens the "From an image" panel, where those modes start. The server refuses the
// other modes too. Delegated: HTMX swaps the form.
(() => {
  "use strict";

  function refresh(select) {
    const form = select.closest("form");
    const note = form?.querySelector("[data-model-modes]");
    if (!note) return;
    const modes = select.selectedOptions[0]?.dataset.modes;
    note.hidden = !modes;
    if (!modes) {
      note.textContent = "";
      return;
    }
    note.textContent =
      `This model can only ${modes}: choose a source image under “From an ` +
      "image”, then paint a mask or extend its sides.";
    const panel = form.querySelector("details.source-panel");
    if (panel) panel.open = true;
  }

  function refreshAll() {
    document.querySelectorAll("select[name=model]").forEach(refresh);
  }

  document.addEventListener("change", (event) => {
    if (event.target.matches?.("select[name=model]")) refresh(event.target);
  });
  document.addEventListener("DOMContentLoaded", refreshAll);
  document.addEventListener("htmx:afterSettle", refreshAll);
  if (document.readyState !== "loading") refreshAll();
})();
