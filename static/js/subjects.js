// A subject's page: a training preset fills in its settings; editing one of them makes the
// run "Custom". The estimate follows the form (HTMX on change).
(function () {
  "use strict";
  const form = document.querySelector("[data-training-form]");
  const data = document.getElementById("training-presets");
  if (!form || !data) return;
  const presets = JSON.parse(data.textContent);
  let filling = false;

  function setField(name, value) {
    const input = form.elements[name];
    if (!input) return;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value;
  }

  form.addEventListener("change", function (event) {
    const target = event.target;
    if (target.name === "preset") {
      const preset = presets[target.value];
      if (!preset) return;
      filling = true;
      Object.keys(preset).forEach(function (name) { setField(name, preset[name]); });
      filling = false;
    } else if (!filling && target.name in presets.quick) {
      const custom = form.querySelector('input[name="preset"][value="custom"]');
      if (custom) custom.checked = true;
    }
  });
})();
