// The studio page: live job events over a WebSocket, with HTTP as the source of truth
// whenever the socket (re)connects, so a dropped message never leaves the page wrong.
(function () {
  "use strict";
  const studio = document.getElementById("studio");
  if (!studio) return;
  // The event names, rendered by the server from studio/realtime/event_types.py.
  const EVENT = JSON.parse(document.getElementById("event-types").textContent);

  const liveDot = document.getElementById("live-dot");
  const canvasStage = document.getElementById("canvas-stage");
  const canvasProgress = document.getElementById("canvas-progress");
  let retryDelay = 500;
  let previewJobId = null; // the job whose step preview is on the canvas

  function refreshJobs() {
    document.body.dispatchEvent(new CustomEvent("studio:refresh-jobs"));
  }

  function setLive(connected) {
    liveDot.classList.toggle("is-connected", connected);
    liveDot.classList.toggle("is-disconnected", !connected);
    liveDot.textContent = connected ? "Live" : "Reconnecting…";
  }

  function jobItem(jobId) {
    return document.querySelector('li.job[data-job-id="' + jobId + '"]');
  }

  function setStatus(item, status, label) {
    item.className = "job is-" + status;
    item.dataset.status = status;
    item.querySelector(".job-status").textContent = label;
  }

  // The ETA of a running job from its own measured step times, once two steps are in.
  const firstSteps = {}; // job id → [time, step] of the first step this page saw
  function duration(seconds) {
    if (seconds < 60) return Math.max(1, Math.round(seconds)) + " s";
    const minutes = Math.floor(seconds / 60);
    return minutes + " min " + Math.round(seconds % 60) + " s";
  }
  function showEta(item, event) {
    const now = performance.now();
    const first = firstSteps[event.job_id] || (firstSteps[event.job_id] = [now, event.step]);
    const eta = item.querySelector("[data-job-eta]");
    if (!eta || event.step <= first[1]) return;
    const perStep = (now - first[0]) / 1000 / (event.step - first[1]);
    eta.textContent = "Done in about " + duration(perStep * (event.total - event.step));
  }

  function showProgress(item, event) {
    const percent = event.total ? Math.round((100 * event.step) / event.total) : 0;
    const progress = item.querySelector(".progress");
    progress.hidden = false;
    progress.classList.remove("is-indeterminate");
    progress.querySelector(".progress-bar").style.width = percent + "%";
    progress.setAttribute("aria-valuenow", percent);
    item.querySelector("[data-job-meta]").textContent = "Step " + event.step + " / " + event.total;
    canvasProgress.hidden = false;
    canvasProgress.querySelector(".progress-bar").style.width = percent + "%";
    canvasProgress.querySelector(".progress").setAttribute("aria-valuenow", percent);
    canvasProgress.querySelector("[data-canvas-meta]").textContent =
      "Step " + event.step + " / " + event.total;
  }

  // Before its first step a job may wait for a cold worker to start, then for its models
  // to load: say which, on the card and the canvas, with how many of them are loaded.
  function showPreparing(item, event) {
    let text = "Starting a worker…";
    let percent = null;
    if (event.stage !== "worker") {
      percent = Math.round((100 * event.loaded) / event.of);
      text = event.loading ? "Loading " + event.loading + "… " + percent + "%" : "Models loaded";
    }
    item.querySelector("[data-job-meta]").textContent = text;
    canvasProgress.hidden = false;
    canvasProgress.querySelector("[data-canvas-meta]").textContent = text;
    [item.querySelector(".progress"), canvasProgress.querySelector(".progress")].forEach(
      function (progress) {
        progress.hidden = false;
        progress.classList.toggle("is-indeterminate", percent === null);
        progress.querySelector(".progress-bar").style.width = (percent || 0) + "%";
      }
    );
  }

  // A job.progress event may carry a small JPEG data URL of the current latents.
  function showPreview(jobId, dataUrl) {
    let preview = document.getElementById("canvas-preview");
    if (!preview) {
      preview = document.createElement("img");
      preview.id = "canvas-preview";
      preview.className = "canvas-preview";
      preview.alt = ""; // transient: the progress text says what is happening
      // Blur by a third of an upscaled preview pixel: enough to soften the blocks at any
      // stage size, little enough to keep the shapes.
      preview.addEventListener("load", function () {
        const scale = Math.min(preview.clientWidth / preview.naturalWidth,
                               preview.clientHeight / preview.naturalHeight);
        preview.style.setProperty("--preview-blur", (scale / 3).toFixed(1) + "px");
      });
      canvasProgress.before(preview);
    }
    preview.src = dataUrl;
    previewJobId = jobId;
    canvasStage.classList.add("is-previewing");
  }

  function clearPreview(jobId) {
    if (jobId !== previewJobId) return; // another job's preview is showing
    const preview = document.getElementById("canvas-preview");
    if (preview) preview.remove();
    previewJobId = null;
    canvasStage.classList.remove("is-previewing");
  }

  function showImage(jobId, image) {
    const img = document.createElement("img");
    img.id = "canvas-image";
    img.className = "canvas-image";
    img.alt = image.alt || "";
    img.src = image.url;
    // Swap once decoded, so the preview gives way to the image without a blank frame.
    img.decode().catch(function () {}).then(function () {
      const old = document.getElementById("canvas-image") || document.getElementById("canvas-empty");
      if (old) old.remove();
      canvasStage.prepend(img);
      clearPreview(jobId);
    });
    const galleryEmpty = document.getElementById("gallery-empty");
    if (galleryEmpty) galleryEmpty.remove();
    htmx.ajax("GET", "/images/" + image.id + "/card/", { target: "#gallery-grid", swap: "afterbegin" });
  }

  const earlyPreparing = {}; // job id → its job.preparing event that came before its card
  document.body.addEventListener("htmx:afterSettle", function () {
    Object.keys(earlyPreparing).forEach(function (jobId) {
      const item = jobItem(jobId);
      if (!item) return;
      if (item.dataset.status === "queued") showPreparing(item, earlyPreparing[jobId]);
      delete earlyPreparing[jobId];
    });
  });

  function handle(event) {
    if ("run_id" in event) return; // a training run's event: the run's page shows them
    if (event.type === EVENT.QUEUE_POSITIONS) {
      // One event for every waiting job of the project: [[job id, place in line], ...].
      event.positions.forEach(function (pair) {
        const waiting = jobItem(pair[0]);
        if (waiting) waiting.querySelector("[data-job-meta]").textContent = "#" + pair[1] + " in queue";
      });
      return;
    }
    if (event.type === EVENT.JOBS_CANCELED) {
      // Many jobs canceled at once (My queue's "Cancel all", or a team admin).
      refreshJobs();
      return;
    }
    const item = jobItem(event.job_id);
    if (!item) {
      // A job this page has not drawn yet (another member's, or a reload race). The
      // embedded worker may say it is starting before Generate's answer draws the card:
      // kept until the card is there.
      if (event.type === EVENT.JOB_PREPARING) earlyPreparing[event.job_id] = event;
      refreshJobs();
      return;
    }
    switch (event.type) {
      case EVENT.JOB_QUEUED:
        item.querySelector("[data-job-meta]").textContent = "#" + event.position + " in queue";
        break;
      case EVENT.JOB_STARTED:
        setStatus(item, "running", "Running");
        showProgress(item, event);
        break;
      case EVENT.JOB_PREPARING:
        showPreparing(item, event);
        break;
      case EVENT.JOB_PROGRESS:
        if (item.dataset.status !== "running") setStatus(item, "running", "Running");
        showProgress(item, event);
        showEta(item, event);
        if (event.preview) showPreview(event.job_id, event.preview);
        break;
      case EVENT.JOB_FINISHED:
        setStatus(item, "finished", "Finished");
        item.querySelector(".progress").hidden = true;
        canvasProgress.hidden = true;
        event.images.forEach(function (image) {
          showImage(event.job_id, image);
        });
        // The server's card has the final details and the actions an ended job allows.
        refreshJobs();
        break;
      case EVENT.JOB_FAILED:
      case EVENT.JOB_CANCELED:
        canvasProgress.hidden = true;
        clearPreview(event.job_id);
        refreshJobs();
        break;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + studio.dataset.eventsPath);
    socket.onopen = function () {
      retryDelay = 500;
      setLive(true);
      refreshJobs();
    };
    socket.onmessage = function (message) {
      handle(JSON.parse(message.data));
    };
    socket.onclose = function () {
      setLive(false);
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }

  // The gallery's lightbox is static/js/lightbox.js, shared with the gallery pages.

  // Ctrl/Cmd+Enter generates from anywhere on the page.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      const form = document.getElementById("generate-form");
      if (form) {
        event.preventDefault();
        form.requestSubmit();
      }
    }
  });

  // Seed buttons as in AUTOMATIC1111: random (an empty field, or -1), and the newest
  // image's seed (the first card of the gallery; seeds kept as text, past 2**53).
  document.addEventListener("click", function (event) {
    const seed = document.querySelector("#generate-form input[name=seed]");
    if (event.target.closest("[data-random-seed]")) {
      seed.value = "";
      seed.focus();
    } else if (event.target.closest("[data-reuse-seed]")) {
      const newest = document.querySelector("#gallery-grid .thumb a[data-seed]");
      if (newest) seed.value = newest.dataset.seed;
      seed.focus();
    }
  });

  // Open sections of the form (From an image, LoRAs, Advanced…) stay open when the form is
  // swapped in afresh (after errors or an import) and after a reload: remembered per
  // project in this tab.
  const openSectionsKey = "studio:open-sections:" + studio.dataset.eventsPath;
  function sectionName(details) {
    return details.querySelector("summary").firstChild.textContent.trim();
  }
  function openSections() {
    try {
      return JSON.parse(sessionStorage.getItem(openSectionsKey)) || {};
    } catch (error) {
      return {};
    }
  }
  function restoreOpenSections() {
    const open = openSections();
    document.querySelectorAll("#generate-form details").forEach(function (details) {
      if (open[sectionName(details)]) details.open = true;
    });
  }
  // "toggle" does not bubble: listen while it goes down.
  document.addEventListener("toggle", function (event) {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.closest("#generate-form")) return;
    const open = openSections();
    open[sectionName(details)] = details.open;
    sessionStorage.setItem(openSectionsKey, JSON.stringify(open));
  }, true);
  document.body.addEventListener("htmx:afterSettle", restoreOpenSections);
  restoreOpenSections();

  // Only the generate form's own request: thumbnail and queue refreshes must not leave
  // the button spinning. An accepted job leaves the form (and button) in place; errors
  // swap in a fresh one.
  function requestButton(elt) {
    if (isImport(elt)) return elt.closest(".btn"); // the "Import from image" label
    const form = elt.closest && elt.closest("#generate-form");
    return form && form.querySelector("[data-generate]");
  }
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    const button = requestButton(event.detail.elt);
    if (button) button.classList.add("is-loading");
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    const button = requestButton(event.detail.elt);
    if (button) button.classList.remove("is-loading");
  });

  // Parameter import: "Import from image" posts the chosen file with the form's values
  // (templates/generation/import_control.html) and the answer is the form, filled. A file
  // dropped anywhere on the page goes through that same input.
  const dropOverlay = document.getElementById("drop-overlay");
  let dragDepth = 0;
  let dragFromPage = false; // a thumbnail dragged within the page is no import
  let keptSourceFiles = null; // the img2img upload, carried over the form swap

  function isImport(elt) {
    return Boolean(elt && elt.matches && elt.matches("[data-import-image]"));
  }

  function importInput() {
    return document.querySelector("#generate-form [data-import-image]");
  }

  function draggingFiles(event) {
    return !dragFromPage && event.dataTransfer &&
      Array.from(event.dataTransfer.types).includes("Files") && importInput() !== null;
  }

  // Dropped on a file input (e.g. the source image), a file is that input's own.
  function onFileInput(event) {
    return event.target.closest && event.target.closest("input[type=file]") !== null;
  }

  function hideDropOverlay() {
    dragDepth = 0;
    if (dropOverlay) dropOverlay.hidden = true;
  }

  function importFile(file) {
    const input = importInput();
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  document.addEventListener("dragstart", function () {
    dragFromPage = true;
  });
  document.addEventListener("dragend", function () {
    dragFromPage = false;
    hideDropOverlay();
  });
  document.addEventListener("dragenter", function (event) {
    if (!draggingFiles(event)) return;
    dragDepth += 1;
    if (dropOverlay) dropOverlay.hidden = onFileInput(event);
  });
  document.addEventListener("dragover", function (event) {
    if (!draggingFiles(event)) return;
    if (dropOverlay) dropOverlay.hidden = onFileInput(event);
    if (onFileInput(event)) return;
    event.preventDefault(); // accept the drop here instead of opening the file
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", function (event) {
    if (!draggingFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) hideDropOverlay();
  });
  document.addEventListener("drop", function (event) {
    if (!draggingFiles(event)) return;
    hideDropOverlay();
    if (event.defaultPrevented || onFileInput(event)) return; // someone else's drop
    event.preventDefault();
    if (event.dataTransfer.files.length) importFile(event.dataTransfer.files[0]);
  });

  // Parameters pasted into the prompt (A1111's infotext, as Civitai's "Copy generation
  // data" gives it, or a ComfyUI workflow) fill the form instead, as A1111's "read
  // generation parameters" button does: they go through the same import, as a text file.
  const PASTED_INFOTEXT = /(^|\n)Steps: \d+/;
  const PASTED_WORKFLOW = /^\s*\{[\s\S]*"(class_type|nodes)"/;
  document.addEventListener("paste", function (event) {
    const target = event.target;
    if (!target.matches || !target.matches("#generate-form textarea[name=prompt]")) return;
    const text = event.clipboardData ? event.clipboardData.getData("text/plain") : "";
    if (!(PASTED_INFOTEXT.test(text) || PASTED_WORKFLOW.test(text))) return;
    if (importInput() === null) return;
    event.preventDefault();
    importFile(new File([text], "pasted text", { type: "text/plain" }));
  });

  // The new form cannot hold a file the server never saw: hand the source upload over.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    const config = event.detail.requestConfig;
    if (!config || !isImport(config.elt)) return;
    const source = document.querySelector("#generate-form input[name=source_upload]");
    keptSourceFiles = null;
    if (source && source.files.length) {
      const transfer = new DataTransfer();
      Array.from(source.files).forEach(function (file) {
        transfer.items.add(file);
      });
      keptSourceFiles = transfer.files;
    }
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    const config = event.detail.requestConfig;
    if (!config || !isImport(config.elt)) return;
    const source = document.querySelector("#generate-form input[name=source_upload]");
    if (source && keptSourceFiles) source.files = keptSourceFiles;
    keptSourceFiles = null;
    const notice = document.querySelector("#generate-form [data-import-notice]");
    if (notice) notice.scrollIntoView({ block: "nearest" });
    const input = importInput();
    if (input) input.focus({ preventScroll: true }); // keyboard users keep their place
  });

  connect();
})();
