// A large file takes a while: say so instead of looking stuck.
document.querySelector("[data-lora-upload]")?.addEventListener("submit", (event) => {
  const form = event.currentTarget;
  const file = form.querySelector("input[type=file]")?.files?.[0];
  const status = form.querySelector("[data-upload-status]");
  if (file && status) status.textContent = `Uploading ${(file.size / 1e6).toFixed(1)} MB…`;
  form.querySelector("[data-upload-submit]")?.setAttribute("aria-disabled", "true");
});
