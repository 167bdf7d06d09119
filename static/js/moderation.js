// The moderation queue: reveal blurred images, select cases for the bulk bar, and the
// keyboard: j/k move between cases, x selects, v reveals, a/r approve/remove (u/d uphold
// or deny an appeal) with the case's chosen reason and note.
// The queue's filters apply as soon as one is chosen.
document.querySelectorAll("[data-submit-on-change]").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});

(function () {
  const queue = document.querySelector("[data-mod-queue]");
  if (!queue) return;
  const cards = () => Array.from(queue.querySelectorAll(".mod-case[data-case-id]"));
  const bulk = document.getElementById("bulk-form");
  let current = null;

  function reveal(card) {
    const media = card.querySelector(".mod-media");
    if (!media) return;
    const hidden = media.classList.toggle("is-blurred");
    const button = media.querySelector("[data-reveal]");
    button.textContent = hidden ? "Reveal" : "Hide";
    button.setAttribute("aria-pressed", String(!hidden));
  }

  function countSelected() {
    if (!bulk) return;
    const selected = queue.querySelectorAll(".mod-select:checked").length;
    bulk.querySelector("[data-bulk-count]").textContent = selected;
    bulk.classList.toggle("has-selection", selected > 0);
    cards().forEach((card) => {
      const box = card.querySelector(".mod-select");
      card.classList.toggle("is-selected", Boolean(box && box.checked));
    });
  }

  function focus(card) {
    if (!card) return;
    if (current) current.classList.remove("is-focused");
    current = card;
    card.classList.add("is-focused");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function step(delta) {
    const all = cards();
    if (!all.length) return;
    const index = current ? all.indexOf(current) : -1;
    focus(all[Math.min(Math.max(index + delta, 0), all.length - 1)]);
  }

  function act(card, key) {
    const button = card && card.querySelector(`button[data-key="${key}"]`);
    if (button) button.form.requestSubmit(button);
  }

  queue.addEventListener("click", (event) => {
    const button = event.target.closest("[data-reveal]");
    if (button) reveal(button.closest(".mod-case"));
    const card = event.target.closest(".mod-case");
    if (card && card !== current) focus(card);
  });
  document.addEventListener("change", (event) => {
    if (event.target.classList.contains("mod-select")) countSelected();
  });
  if (bulk) {
    bulk.addEventListener("submit", (event) => {
      if (!queue.querySelector(".mod-select:checked")) {
        event.preventDefault();
        bulk.querySelector("[data-bulk-count]").textContent = "Select cases first: 0";
      }
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea, [contenteditable]")) return;
    const key = event.key.toLowerCase();
    if (key === "j") step(1);
    else if (key === "k") step(-1);
    else if (!current) return;
    else if (key === "x") {
      const box = current.querySelector(".mod-select");
      if (box) { box.checked = !box.checked; countSelected(); }
    } else if (key === "v") reveal(current);
    else if (["a", "r", "u", "d"].includes(key)) act(current, key);
    else return;
    event.preventDefault();
  });
  countSelected();
})();
