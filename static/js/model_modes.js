// The studio's model menu: a model that runs only some modes (a FLUX.1 Fill model: inpaint
// and outpaint; generation.forms.StudioModelSelect's data-modes) says so under the menu and
// opens the "From an image" panel, where those modes start. The server refuses the other
// modes too. Delegated: HTMX swaps the form.
(() => {
  "use strict";

  const MODE_NAMES = {
    txt2img: "text to image",
    img2img: "image to image",
    inpaint: "inpaint",
    outpaint: "outpaint",
  };

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
    const names = modes.split(" ").map((mode) => MODE_NAMES[mode] || mode);
    note.textContent =
      `This model can only ${names.join(" and ")}: choose a source image under “From an ` +
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
