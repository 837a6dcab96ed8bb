// The preference centre: after a save (or a refusal), the focus goes to the message, so a
// screen reader reads it and the keyboard starts from there.
document.addEventListener("DOMContentLoaded", () => {
  const message = document.getElementById("status") || document.getElementById("error");
  if (message) message.focus();
});
