// The Content-Security-Policy allows no style attributes in markup, so pages carry computed
// measures as data attributes and this sets them through the CSSOM (which it allows), on
// every page and on every fragment htmx swaps in. Only numbers are read.
(function () {
  "use strict";

  function percent(value) {
    const number = parseFloat(value);
    return Number.isFinite(number) ? Math.min(100, Math.max(0, number)) : 0;
  }

  function apply(root) {
    if (!root.querySelectorAll) return;
    const within = (selector) =>
      [root.matches && root.matches(selector) ? root : null, ...root.querySelectorAll(selector)]
        .filter(Boolean);
    // Progress bars: data-progress="37" is 37% done.
    within("[data-progress]").forEach(function (bar) {
      bar.style.width = percent(bar.dataset.progress) + "%";
    });
    // A crop box over its image: data-crop-box="left top width height", in percent.
    within("[data-crop-box]").forEach(function (box) {
      const [left, top, width, height] = box.dataset.cropBox.split(" ").map(percent);
      Object.assign(box.style, {
        left: left + "%", top: top + "%", width: width + "%", height: height + "%",
      });
    });
    // Score bars: data-score="0.42" fills 42% (the stylesheet reads --score).
    within("[data-score]").forEach(function (bar) {
      bar.style.setProperty("--score", String(percent(bar.dataset.score * 100) / 100));
    });
  }

  htmx.onLoad(apply);
})();
