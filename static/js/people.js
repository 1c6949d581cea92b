// "Copy link" buttons on the People page: copy the invitation link in the named field. Without the clipboard
// API (an http:// address) the field's text is selected instead, so a keyboard copy still works.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy-button");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  field.select();
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy link"; }, 2000); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(done, () => field.select());
  } else {
    try { if (document.execCommand("copy")) done(); } catch (_) { /* the text stays selected */ }
  }
});
