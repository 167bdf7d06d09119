// Inpaint mask painter: paint over the source image where it should be redrawn.
// The mask travels with the generate form as a PNG data URL (white: redraw, black: keep)
// in its hidden `mask_data` input; the server checks it like any uploaded image.
(function () {
  "use strict";

  const dialog = document.getElementById("mask-dialog");
  if (!dialog) return;
  const stage = dialog.querySelector("[data-mask-stage]");
  const picture = dialog.querySelector("[data-mask-picture]");
  const canvas = dialog.querySelector("[data-mask-canvas]");
  const sizeInput = dialog.querySelector("[data-mask-size]");
  const blurInput = dialog.querySelector("[data-mask-blur]");
  const undoButton = dialog.querySelector("[data-mask-tool=undo]");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const UNDO_LIMIT = 30; // whole-canvas snapshots: enough to step back, bounded in memory
  let undoStack = [];
  let erasing = false;
  let painting = false;
  let last = null; // the previous point of the stroke being painted
  let objectUrl = null;

  function form() {
    return document.getElementById("generate-form");
  }

  // The chosen gallery image, or the file picked for upload.
  function sourceUrl() {
    const thumb = form().querySelector(".source-thumb img");
    if (thumb) return thumb.src;
    const file = form().querySelector("input[name=source_upload]");
    if (file && file.files.length) {
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(file.files[0]);
      return objectUrl;
    }
    return null;
  }

  // The image mode the form is in: a painted mask inpaints, extended sides outpaint.
  function setStatus() {
    const status = form().querySelector("[data-mask-status]");
    const hasMask = form().querySelector("input[name=mask_data]").value !== "";
    const extended = Array.from(form().querySelectorAll("input[name^=outpaint_]")).some(
      (input) => Number(input.value) > 0
    );
    if (!status) return;
    if (hasMask) status.textContent = "Mask painted: inpaint";
    else if (extended) status.textContent = "Sides extended: outpaint";
    else status.textContent = "No mask: img2img";
  }

  // Every stroke, invert and clear can be undone (button or Ctrl/Cmd+Z).
  function remember() {
    undoStack.push(context.getImageData(0, 0, canvas.width, canvas.height));
    if (undoStack.length > UNDO_LIMIT) undoStack.shift();
    undoButton.disabled = false;
  }

  function undo() {
    const previous = undoStack.pop();
    if (previous) context.putImageData(previous, 0, 0);
    undoButton.disabled = undoStack.length === 0;
  }

  // The mask as sent: its edges softened by the blur radius (A1111's "Mask blur"), so the
  // redrawn area fades into the kept one.
  function maskDataUrl() {
    const radius = Number(blurInput.value);
    if (!radius) return canvas.toDataURL("image/png");
    const blurred = document.createElement("canvas");
    blurred.width = canvas.width;
    blurred.height = canvas.height;
    const target = blurred.getContext("2d");
    target.fillStyle = "#000";
    target.fillRect(0, 0, blurred.width, blurred.height);
    target.filter = "blur(" + radius + "px)";
    target.drawImage(canvas, 0, 0);
    return blurred.toDataURL("image/png");
  }

  // The painting shows the blur it will be sent with, scaled as the canvas is displayed.
  function previewBlur() {
    const scale = canvas.clientWidth / canvas.width || 1;
    canvas.style.setProperty("--mask-blur", (Number(blurInput.value) * scale).toFixed(1) + "px");
  }
  blurInput.addEventListener("input", previewBlur);

  function open() {
    const url = sourceUrl();
    if (!url) {
      const status = form().querySelector("[data-mask-status]");
      if (status) status.textContent = "Choose a source image first.";
      return;
    }
    picture.onload = function () {
      canvas.width = picture.naturalWidth;
      canvas.height = picture.naturalHeight;
      const saved = form().querySelector("input[name=mask_data]").value;
      undoStack = [];
      undoButton.disabled = true;
      context.fillStyle = "#000";
      context.fillRect(0, 0, canvas.width, canvas.height);
      if (saved) {
        const previous = new Image();
        previous.onload = function () {
          context.drawImage(previous, 0, 0, canvas.width, canvas.height);
        };
        previous.src = saved;
      }
      dialog.showModal();
      previewBlur();
    };
    picture.src = url;
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) / box.width) * canvas.width,
      y: ((event.clientY - box.top) / box.height) * canvas.height,
      scale: canvas.width / box.width,
    };
  }

  // A round-capped line from the last point, so fast strokes stay continuous.
  function stroke(event) {
    const at = point(event);
    const from = last || at;
    context.strokeStyle = erasing ? "#000" : "#fff";
    context.lineWidth = Number(sizeInput.value) * at.scale;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(at.x, at.y);
    context.stroke();
    last = at;
  }

  canvas.addEventListener("pointerdown", function (event) {
    remember();
    painting = true;
    last = null;
    canvas.setPointerCapture(event.pointerId);
    stroke(event);
  });
  canvas.addEventListener("pointermove", function (event) {
    if (painting) stroke(event);
  });
  canvas.addEventListener("pointerup", function () {
    painting = false;
    last = null;
  });

  dialog.addEventListener("click", function (event) {
    const button = event.target.closest("[data-mask-tool]");
    if (!button) return;
    const tool = button.dataset.maskTool;
    if (tool === "brush" || tool === "eraser") {
      erasing = tool === "eraser";
      dialog.querySelectorAll("[data-mask-tool=brush],[data-mask-tool=eraser]").forEach(function (b) {
        b.setAttribute("aria-pressed", String(b === button));
      });
    } else if (tool === "undo") {
      undo();
    } else if (tool === "invert") {
      remember();
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      for (let i = 0; i < pixels.data.length; i += 4) {
        const value = 255 - pixels.data[i];
        pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = value;
      }
      context.putImageData(pixels, 0, 0);
    } else if (tool === "clear") {
      remember();
      context.fillStyle = "#000";
      context.fillRect(0, 0, canvas.width, canvas.height);
    } else if (tool === "done") {
      form().querySelector("input[name=mask_data]").value = maskDataUrl();
      setStatus();
      dialog.close();
    } else if (tool === "remove") {
      form().querySelector("input[name=mask_data]").value = "";
      setStatus();
      dialog.close();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-mask-open]")) open();
  });

  document.addEventListener("input", function (event) {
    if (event.target.name && event.target.name.startsWith("outpaint_")) setStatus();
  });

  dialog.addEventListener("keydown", function (event) {
    if (event.key.toLowerCase() === "z" && (event.ctrlKey || event.metaKey) && !event.shiftKey) {
      event.preventDefault();
      undo();
    }
  });

  stage.addEventListener("contextmenu", function (event) {
    event.preventDefault();
  });
})();
