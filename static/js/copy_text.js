// "Copy link" buttons: their data-copy-text goes to the clipboard. Where the page is
// not a secure context (plain http off localhost) there is no clipboard API: the link's
// shown text (data-copy-source, in the same row) is selected instead, for Ctrl/Cmd+C.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy-text]");
    if (!button) return;
    const label = button.textContent;
    function done(text) {
      button.textContent = text;
      setTimeout(function () {
        button.textContent = label;
      }, 2000);
    }
    function selectInstead() {
      const shown = button.closest("tr, li, p").querySelector("[data-copy-source]");
      if (shown) window.getSelection().selectAllChildren(shown);
      done("Press Ctrl+C");
    }
    if (!navigator.clipboard) {
      selectInstead();
      return;
    }
    navigator.clipboard.writeText(button.dataset.copyText).then(function () {
      done("Copied");
    }, selectInstead);
  });
})();
