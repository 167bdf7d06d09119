// The lightbox, on every page with a thumbnail grid (.gallery-grid) and the dialog of
// templates/gallery/lightbox.html: a plain click on a thumbnail opens its image large,
// ← and → step through the grid (loading the grid's next page at its end), Esc closes.
(function () {
  "use strict";
  const lightbox = document.getElementById("lightbox");
  if (!lightbox) return;

  const THUMB_LINKS = ".gallery-grid .thumb > a";
  const image = lightbox.querySelector(".lightbox-image");
  const prev = lightbox.querySelector('[data-lightbox-step="-1"]');
  const next = lightbox.querySelector('[data-lightbox-step="1"]');
  const details = lightbox.querySelector("[data-lightbox-details]");
  let current = null; // the thumbnail link whose image is showing
  let waitingForMore = false; // stepped past the last thumbnail: step again once loaded

  function links() {
    return Array.from(document.querySelectorAll(THUMB_LINKS));
  }

  function moreLoader() {
    return document.querySelector("[data-gallery-more]");
  }

  function updateSteps() {
    const all = links();
    const index = all.indexOf(current);
    prev.disabled = index <= 0;
    next.disabled = index === all.length - 1 && !moreLoader();
  }

  function open(link) {
    const alt = link.querySelector("img").alt;
    image.src = link.dataset.full;
    image.alt = alt;
    lightbox.querySelector(".lightbox-prompt").textContent = alt;
    details.href = link.getAttribute("href");
    const useSeed = lightbox.querySelector("[data-lightbox-use-seed]");
    useSeed.dataset.useSeed = link.dataset.seed || "";
    useSeed.hidden = !link.dataset.seed;
    useSeed.textContent = "Use seed";
    lightbox.querySelector("[data-lightbox-download]").href = link.dataset.full + "?download=1";
    current = link;
    // The card's like button, if it has one (static/js/collections.js keeps copies in step).
    const reactions = lightbox.querySelector("[data-lightbox-reactions]");
    const like = link.closest(".thumb").querySelector("[data-reaction]");
    const hadFocus = reactions.contains(document.activeElement);
    reactions.replaceChildren(...(like ? [like.cloneNode(true)] : []));
    if (like) htmx.process(reactions);
    // The focused button just left the page: focus its copy (or Details), not the body,
    // so the arrow keys keep reaching the lightbox.
    if (hadFocus) (reactions.querySelector("button") || details).focus();
    if (!lightbox.open) lightbox.showModal();
    updateSteps();
  }

  function step(delta) {
    const all = links();
    const target = all[all.indexOf(current) + delta];
    if (target) {
      open(target);
      target.scrollIntoView({ block: "nearest" }); // the grid follows, and loads ahead
      return;
    }
    const more = moreLoader();
    if (delta > 0 && more && !waitingForMore) {
      waitingForMore = true;
      htmx.trigger(more, "gallery:more");
    }
  }

  document.body.addEventListener("htmx:afterSettle", function () {
    if (lightbox.open) updateSteps();
    if (!waitingForMore) return;
    waitingForMore = false;
    if (lightbox.open) step(1);
  });
  document.body.addEventListener("htmx:responseError", function () {
    waitingForMore = false;
  });

  lightbox.addEventListener("click", function (event) {
    const button = event.target.closest("[data-lightbox-step]");
    if (button) step(Number(button.dataset.lightboxStep));
    // The dialog fills the screen: a click on its bare background closes it.
    if (event.target === lightbox || event.target.closest("[data-lightbox-close]")) lightbox.close();
  });
  // On the document: a step button disabled at either end drops its focus to the body.
  document.addEventListener("keydown", function (event) {
    if (!lightbox.open) return;
    if (event.key === "ArrowLeft") step(-1);
    if (event.key === "ArrowRight") step(1);
  });
  // Back to the thumbnail last shown, so keyboard users keep their place in the grid.
  lightbox.addEventListener("close", function () {
    if (current) current.focus();
  });

  // A plain click opens the lightbox; a modified one still opens the details page.
  document.addEventListener("click", function (event) {
    const thumb = event.target.closest(THUMB_LINKS);
    if (thumb && !(event.ctrlKey || event.metaKey || event.shiftKey || event.altKey)) {
      event.preventDefault();
      open(thumb);
    }
  });
})();
