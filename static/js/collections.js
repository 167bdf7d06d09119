// Grids with a select mode (templates/gallery/collection_select.html): "Select" shows a
// checkbox over every card (a click anywhere on a card checks it instead of opening the
// lightbox); the checked images go to the chosen collection in one post. Also: every copy
// of an image's like button (card, lightbox) shows the same state after one is pressed,
// collection cards move up and down (buttons, or dragging one onto another) without a
// reload, and [data-confirm] forms ask first.
(function () {
  "use strict";

  const bar = document.querySelector("[data-select-bar]");

  function boxes() {
    return Array.from(document.querySelectorAll("[data-select-image]"));
  }

  function updateCount() {
    if (!bar) return;
    const checked = boxes().filter(function (box) { return box.checked; }).length;
    bar.querySelector("[data-select-count]").textContent =
      checked ? checked + " selected" : "None selected";
    const submit = bar.querySelector("[data-select-submit]");
    if (submit) submit.disabled = checked === 0;
  }

  function setSelecting(on) {
    document.body.classList.toggle("is-selecting", on);
    const toggle = bar.querySelector("[data-select-toggle]");
    toggle.setAttribute("aria-pressed", String(on));
    bar.querySelector("[data-select-label]").textContent = on ? "Done" : "Select";
    bar.querySelector("[data-select-actions]").hidden = !on;
    if (!on) {
      boxes().forEach(function (box) { box.checked = false; });
      bar.querySelector("#select-result").replaceChildren();
    }
    updateCount();
  }

  if (bar) {
    bar.querySelector("[data-select-toggle]").addEventListener("click", function () {
      setSelecting(!document.body.classList.contains("is-selecting"));
    });
    bar.querySelector("[data-select-clear]").addEventListener("click", function () {
      boxes().forEach(function (box) { box.checked = false; });
      updateCount();
    });
    document.addEventListener("change", function (event) {
      if (event.target.matches("[data-select-image]")) {
        event.target.closest(".thumb").classList.toggle("is-selected", event.target.checked);
        updateCount();
      }
    });
    // Added: the checks go, the message stays.
    bar.addEventListener("htmx:afterRequest", function (event) {
      if (event.detail.elt !== bar || !event.detail.successful) return;
      boxes().forEach(function (box) {
        box.checked = false;
        box.closest(".thumb").classList.remove("is-selected");
      });
      updateCount();
    });
  }

  // One like, every copy of its button: htmx swaps the pressed one, here the others
  // (before the swap, while the pressed one is still in the page to send the event).
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    const form = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!form || !form.matches("[data-reaction]") || !event.detail.shouldSwap) return;
    const key = form.dataset.reaction;
    const html = event.detail.serverResponse;
    document.querySelectorAll('[data-reaction="' + key + '"]').forEach(function (other) {
      if (other === form) return;
      const holder = document.createElement("div");
      holder.innerHTML = html.trim();
      const fresh = holder.firstElementChild;
      other.replaceWith(fresh);
      htmx.process(fresh);
    });
  });

  // Reordering: the server swapped the image with its neighbour; the page follows.
  document.body.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt;
    if (!form.matches || !form.matches("[data-move]") || !event.detail.successful) return;
    const item = form.closest("[data-collection-item]");
    const up = event.detail.requestConfig.parameters.direction === "up"
      || (event.detail.requestConfig.formData && event.detail.requestConfig.formData.get("direction") === "up");
    const neighbour = up ? item.previousElementSibling : item.nextElementSibling;
    if (!neighbour || !neighbour.matches("[data-collection-item]")) return;
    if (up) neighbour.before(item); else neighbour.after(item);
    item.querySelector("button[name=direction][value=" + (up ? "up" : "down") + "]").focus();
  });

  // Reordering by dragging a card onto another: it lands before that card when moved
  // earlier, after it when moved later; the server renumbers, then the page follows.
  let dragged = null;

  function placeable(target) {
    return target.closest ? target.closest("[data-place-url]") : null;
  }

  document.addEventListener("dragstart", function (event) {
    dragged = placeable(event.target);
    if (!dragged) return;
    dragged.classList.add("is-dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", dragged.dataset.collectionItem);
  });

  document.addEventListener("dragover", function (event) {
    const target = placeable(event.target);
    if (!dragged || !target || target === dragged) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
  });

  document.addEventListener("drop", function (event) {
    const target = placeable(event.target);
    if (!dragged || !target || target === dragged) return;
    event.preventDefault();
    const item = dragged;
    const cards = Array.from(document.querySelectorAll("[data-place-url]"));
    const side = cards.indexOf(item) < cards.indexOf(target) ? "after" : "before";
    const csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
    fetch(item.dataset.placeUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrf, "HX-Request": "true" },
      body: new URLSearchParams({ target: target.dataset.collectionItem, side: side }),
    }).then(function (response) {
      if (!response.ok) return;
      if (side === "after") target.after(item); else target.before(item);
    });
  });

  document.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("is-dragging");
    dragged = null;
  });

  document.addEventListener("submit", function (event) {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
