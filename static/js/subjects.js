// A subject's page: a training preset fills in its settings (the chosen base model's
// family's presets); editing one of them makes the run "Custom", and choosing a model of
// another family fills the chosen preset in again. The estimate follows the form (HTMX on
// change).
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

  function familyPresets() {
    const model = form.elements.model;
    return presets.families[presets.models[model ? model.value : ""]] || {};
  }

  function fill(name) {
    const preset = familyPresets()[name];
    if (!preset) return;
    filling = true;
    Object.keys(preset).forEach(function (field) { setField(field, preset[field]); });
    filling = false;
  }

  // Only the chosen model's family's presets are offered (FLUX.1's "24 GB (fp8)" is its own);
  // a preset the family lacks gives way to its "balanced" one. FP8 base weights only for
  // the families whose runs take them.
  function offerFamilyPresets() {
    const model = form.elements.model;
    const fp8 = form.elements.fp8_base;
    if (fp8) {
      const takesFp8 = presets.fp8_families.includes(presets.models[model ? model.value : ""]);
      fp8.closest(".field").hidden = !takesFp8;
      if (!takesFp8) fp8.checked = false;
    }
    const offered = familyPresets();
    form.querySelectorAll('input[name="preset"]').forEach(function (radio) {
      const available = radio.value === "custom" || radio.value in offered;
      radio.closest(".preset-choice").hidden = !available;
      radio.disabled = !available;
      if (!available && radio.checked && offered.balanced) {
        form.querySelector('input[name="preset"][value="balanced"]').checked = true;
      }
    });
  }

  form.addEventListener("change", function (event) {
    const target = event.target;
    if (target.name === "model") offerFamilyPresets();
    const chosen = form.querySelector('input[name="preset"]:checked');
    if (target.name === "preset") {
      fill(target.value);
    } else if (target.name === "model") {
      if (chosen) fill(chosen.value);
    } else if (!filling && target.name in (familyPresets().quick || {})) {
      const custom = form.querySelector('input[name="preset"][value="custom"]');
      if (custom) custom.checked = true;
    }
  });
  offerFamilyPresets();
})();
