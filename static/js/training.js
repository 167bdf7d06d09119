// A training run's page: step, loss chart, ETA, samples and log live over the project's
// WebSocket; the server's state is re-read whenever the socket (re)connects or the run
// changes status, so a dropped message never leaves the page wrong.
(function () {
  "use strict";
  const page = document.getElementById("training");
  if (!page) return;
  const runId = Number(page.dataset.runId);
  // The event names, rendered by the server from studio/realtime/event_types.py.
  const EVENT = JSON.parse(document.getElementById("event-types").textContent);
  const liveDot = document.getElementById("live-dot");
  const CHART_WIDTH = 600;
  const CHART_HEIGHT = 160;
  let retryDelay = 500;
  let losses = [];

  function state() {
    return document.getElementById("training-state");
  }

  function readLosses() {
    const data = document.getElementById("training-losses");
    losses = data ? JSON.parse(data.textContent) : [];
  }

  function refresh() {
    htmx.trigger(state(), "training:refresh");
  }

  function setLive(connected) {
    liveDot.classList.toggle("is-connected", connected);
    liveDot.classList.toggle("is-disconnected", !connected);
    liveDot.textContent = connected ? "Live" : "Reconnecting…";
  }

  // The same scaling as TrainingRun.chart_points: steps across, loss from min to max.
  function drawChart(total) {
    const line = state().querySelector("[data-loss-line]");
    if (!line || !losses.length) return;
    const values = losses.map(function (point) { return point[1]; });
    const low = Math.min.apply(null, values);
    const spread = (Math.max.apply(null, values) - low) || 1;
    line.setAttribute("points", losses.map(function (point) {
      const x = (CHART_WIDTH * point[0]) / Math.max(total, 1);
      const y = CHART_HEIGHT - (CHART_HEIGHT * (point[1] - low)) / spread;
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
  }

  function text(selector, value) {
    const element = state().querySelector(selector);
    if (element) element.textContent = value;
  }

  function showProgress(event) {
    const percent = event.total ? Math.round((100 * event.step) / event.total) : 0;
    const bar = state().querySelector("[data-run-bar]");
    bar.style.width = percent + "%";
    bar.parentElement.setAttribute("aria-valuenow", percent);
    text("[data-run-step]", event.step);
    text("[data-run-loss]", event.loss.toFixed(4));
    text("[data-run-eta]", event.eta || "—");
    losses.push([event.step, event.loss]);
    drawChart(event.total);
  }

  function showSample(event) {
    const grid = state().querySelector("[data-samples]");
    const empty = grid.querySelector("[data-samples-empty]");
    if (empty) empty.remove();
    const figure = document.createElement("figure");
    figure.className = "sample";
    const img = document.createElement("img");
    img.src = event.preview;
    img.alt = "Sample at step " + event.sample_step;
    const caption = document.createElement("figcaption");
    caption.className = "small muted";
    caption.textContent = "Step " + event.sample_step;
    figure.append(img, caption);
    grid.append(figure);
  }

  function appendLog(line) {
    const log = state().querySelector("[data-run-log]");
    if (log.textContent === "Nothing yet.") log.textContent = "";
    log.textContent += (log.textContent ? "\n" : "") + line;
    log.scrollTop = log.scrollHeight;
  }

  function handle(event) {
    if (event.run_id !== runId) return;
    switch (event.type) {
      case EVENT.TRAINING_PROGRESS:
        if (state().dataset.status !== "running") refresh();
        else showProgress(event);
        break;
      case EVENT.TRAINING_SAMPLE:
        showSample(event);
        break;
      case EVENT.TRAINING_LOG:
        appendLog(event.line);
        break;
      default: // queued, started, finished, failed, canceled: the server's view
        refresh();
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + page.dataset.eventsPath);
    socket.onopen = function () {
      retryDelay = 500;
      setLive(true);
      refresh();
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

  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id === "training-state" || event.target.id === "training-state") {
      readLosses();
    }
  });
  readLosses();
  connect();
})();
