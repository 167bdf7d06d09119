// The studio page: live job events over a WebSocket, with HTTP as the source of truth
// whenever the socket (re)connects, so a dropped message never leaves the page wrong.
(function () {
  "use strict";
  const studio = document.getElementById("studio");
  if (!studio) return;

  const liveDot = document.getElementById("live-dot");
  const canvasStage = document.getElementById("canvas-stage");
  const canvasProgress = document.getElementById("canvas-progress");
  let retryDelay = 500;

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

  function showProgress(item, event) {
    const percent = event.total ? Math.round((100 * event.step) / event.total) : 0;
    const progress = item.querySelector(".progress");
    progress.hidden = false;
    progress.classList.remove("is-indeterminate");
    progress.querySelector(".progress-bar").style.width = percent + "%";
    item.querySelector("[data-job-meta]").textContent = "Step " + event.step + " / " + event.total;
    canvasProgress.hidden = false;
    canvasProgress.querySelector(".progress-bar").style.width = percent + "%";
    canvasProgress.querySelector("[data-canvas-meta]").textContent =
      "Step " + event.step + " / " + event.total;
  }

  function showImage(image) {
    let img = document.getElementById("canvas-image");
    if (!img) {
      const empty = document.getElementById("canvas-empty");
      if (empty) empty.remove();
      img = document.createElement("img");
      img.id = "canvas-image";
      img.className = "canvas-image";
      canvasStage.prepend(img);
    }
    img.src = image.url;
    img.alt = image.alt || "";
    const galleryEmpty = document.getElementById("gallery-empty");
    if (galleryEmpty) galleryEmpty.remove();
    htmx.ajax("GET", "/images/" + image.id + "/card/", { target: "#gallery-grid", swap: "afterbegin" });
  }

  function handle(event) {
    const item = jobItem(event.job_id);
    if (!item) {
      // A job this page has not drawn yet (another member's, or a reload race).
      refreshJobs();
      return;
    }
    switch (event.type) {
      case "job.queued":
        item.querySelector("[data-job-meta]").textContent = "#" + event.position + " in queue";
        break;
      case "job.started":
        setStatus(item, "running", "Running");
        showProgress(item, event);
        break;
      case "job.progress":
        if (item.dataset.status !== "running") setStatus(item, "running", "Running");
        showProgress(item, event);
        break;
      case "job.finished":
        setStatus(item, "finished", "Finished");
        item.querySelector(".progress").hidden = true;
        canvasProgress.hidden = true;
        item.querySelector("[data-job-meta]").textContent = "Done";
        event.images.forEach(showImage);
        break;
      case "job.failed":
      case "job.canceled":
        canvasProgress.hidden = true;
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

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-random-seed]")) {
      const seed = document.querySelector("#generate-form input[name=seed]");
      seed.value = "";
      seed.focus();
    }
  });

  document.body.addEventListener("htmx:beforeRequest", function (event) {
    const button = event.target.querySelector && event.target.querySelector("[data-generate]");
    if (button) button.classList.add("is-loading");
  });

  connect();
})();
