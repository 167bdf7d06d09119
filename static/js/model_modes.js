// The studio's model menu: a model that runs only some modes (a FLUX.1 Fill model: inpaint
// and outpaint; generation.forms.StudioModelSelect's data-modes, in words) says so under the
// menu and opens the "From an image" panel, where those modes start; a FLUX.1 Depth or
// Canny model (text to image, data-control-image) opens the ControlNet panel, where its
// control image goes. The server refuses the other modes too. Delegated: HTMX swaps the form.
(() => {
  "use strict";

  // The ControlNet panel shows a ControlNet's fields, or for a model that reads the control
  // image itself only the image (its thresholds, scale and edge preview would do nothing).
  function showControlFields(form, readsImage) {
    form.querySelectorAll("[data-controlnet-only]").forEach((part) => {
      part.hidden = readsImage;
    });
    form.querySelectorAll("[data-control-image-only]").forEach((part) => {
      part.hidden = !readsImage;
    });
    // A ControlNet chosen before stays out of the request: the model refuses one.
    const controlnet = form.querySelector("select[name=control_model]");
    if (readsImage && controlnet) controlnet.value = "";
  }

  function refresh(select) {
    const form = select.closest("form");
    const note = form?.querySelector("[data-model-modes]");
    if (!note) return;
    const option = select.selectedOptions[0];
    showControlFields(form, option?.dataset.controlImage !== undefined);
    const modes = option?.dataset.modes;
    note.hidden = !modes;
    if (!modes) {
      note.textContent = "";
      return;
    }
    if (option.dataset.controlImage !== undefined) {
      note.textContent =
        "This model makes images from text guided by a control image (a depth map or an " +
        "edge map, used as it is): choose it under “ControlNet” and leave the ControlNet " +
        "model at None.";
      const controlPanel = form.querySelector("details.control-panel");
      if (controlPanel) controlPanel.open = true;
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
