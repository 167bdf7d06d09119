// The generate form's LoRA stack (templates/generation/includes/lora_picker.html): add a
// LoRA from the menu, set its weight by slider or number, remove it, put its trigger words
// in the prompt. Only LoRAs of the chosen model's family are offered; a stacked one that
// doesn't fit the model says so (the server refuses it too). Delegated: HTMX swaps the form.
(() => {
  "use strict";

  const picker = (node) => node?.closest?.("[data-lora-picker]");

  // The chosen model's family, from its option (generation.loras.forms.ModelSelect).
  function modelFamily(root) {
    const select = root.closest("form")?.querySelector("select[name=model]");
    return select?.selectedOptions[0]?.dataset.family || "";
  }

  function refresh(root) {
    const family = modelFamily(root);
    const stacked = new Set(
      [...root.querySelectorAll("[data-lora-rows] [data-lora-row]")].map((row) => row.dataset.loraId),
    );
    let offered = 0;
    for (const option of root.querySelectorAll("[data-lora-add] option[value]:not([value=''])")) {
      const hide = (family && option.dataset.family !== family) || stacked.has(option.value);
      option.hidden = hide;
      option.disabled = hide;
      if (!hide) offered += 1;
    }
    const none = root.querySelector("[data-lora-none]");
    if (none) none.hidden = offered > 0 || stacked.size > 0;
    for (const row of root.querySelectorAll("[data-lora-rows] [data-lora-row]")) {
      const badge = row.querySelector("[data-lora-mismatch]");
      if (badge) badge.hidden = !family || row.dataset.family === family;
    }
    const count = root.querySelector("[data-lora-count]");
    if (count) count.textContent = stacked.size ? `${stacked.size} stacked` : "";
  }

  function refreshAll() {
    document.querySelectorAll("[data-lora-picker]").forEach(refresh);
  }

  function addRow(root, id) {
    const template = root.querySelector("template[data-lora-templates]");
    const row = template?.content.querySelector(`[data-lora-id="${CSS.escape(id)}"]`);
    if (!row) return;
    const copy = row.cloneNode(true);
    root.querySelector("[data-lora-rows]").append(copy);
    refresh(root);
    copy.querySelector("[data-lora-number]")?.focus();
  }

  function addTriggerWords(root, words) {
    const prompt = root.closest("form")?.querySelector("[name=prompt]");
    if (!prompt || !words) return;
    const text = prompt.value.trimEnd();
    if (text.toLowerCase().includes(words.toLowerCase())) return;
    prompt.value = text ? `${text}, ${words}` : words;
    prompt.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.matches?.("[data-lora-add]") && target.value) {
      addRow(picker(target), target.value);
      target.value = "";
    } else if (target.matches?.("form [name=model]")) {
      target.form.querySelectorAll("[data-lora-picker]").forEach(refresh);
    }
  });

  document.addEventListener("input", (event) => {
    const target = event.target;
    const row = target.closest?.("[data-lora-row]");
    if (!row) return;
    if (target.matches("[data-lora-range]")) {
      row.querySelector("[data-lora-number]").value = target.value;
    } else if (target.matches("[data-lora-number]") && target.value !== "") {
      row.querySelector("[data-lora-range]").value = target.value;
    }
  });

  document.addEventListener("click", (event) => {
    const remove = event.target.closest?.("[data-lora-remove]");
    if (remove) {
      const root = picker(remove);
      remove.closest("[data-lora-row]").remove();
      refresh(root);
      root.querySelector("[data-lora-add]")?.focus();
      return;
    }
    const trigger = event.target.closest?.("[data-lora-trigger]");
    if (trigger) addTriggerWords(picker(trigger), trigger.dataset.loraTrigger);
  });

  document.addEventListener("DOMContentLoaded", refreshAll);
  document.addEventListener("htmx:afterSettle", refreshAll);
  if (document.readyState !== "loading") refreshAll();
})();
