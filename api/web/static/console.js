// The simulate page: a code editor for the candidate rules (when the bundle was built), the
// server's problems shown on their lines, and an uploaded rule file loaded into the editor.
(function () {
  "use strict";

  const textarea = document.getElementById("rules");
  if (!textarea) return;
  const editor = window.RapportEditor ? window.RapportEditor.attach(textarea, { language: "toml" }) : null;
  const problems = [];
  for (const item of document.querySelectorAll("#rules-problems li[data-line]")) {
    const line = parseInt(item.dataset.line, 10);
    if (line && item.dataset.source === "candidate rules") {
      problems.push({ line, message: item.textContent });
    }
  }
  if (editor) editor.setProblems(problems);
  textarea.setAttribute("aria-invalid", problems.length ? "true" : "false");

  // The candidate rules are kept in this tab: a submission the server refuses unread (too
  // large) answers with the rules in force, and they are put back here.
  const KEY = "rapport.simulate.rules";
  const form = document.getElementById("simulate-form");
  function keep() {
    try {
      sessionStorage.setItem(KEY, textarea.value);
    } catch (error) {
      // Storage full or switched off: only the safety net is lost.
    }
  }
  if (form.dataset.restoreRules === "true") {
    let kept = null;
    try {
      kept = sessionStorage.getItem(KEY);
    } catch (error) {
      // Storage switched off: the rules in force stay in the editor.
    }
    if (kept !== null) {
      if (editor) editor.setValue(kept);
      textarea.value = kept;
    }
  }

  function bytesOf(event) {
    const data = event.submitter ? new FormData(form, event.submitter) : new FormData(form);
    let size = 0;
    for (const value of data.values()) size += typeof value === "string" ? new Blob([value]).size : value.size;
    return size + 1024; // the multipart boundaries and headers
  }

  form.addEventListener("submit", (event) => {
    keep();
    const limit = Number(form.dataset.maxBytes);
    const size = bytesOf(event);
    if (!limit || size <= limit) return;
    event.preventDefault();
    const list = document.getElementById("rules-problems");
    const message = document.createElement("p");
    message.className = "bad";
    message.textContent = "The rules and the history file together are about " + Math.ceil(size / 1024) +
      " KiB and the server accepts at most " + Math.ceil(limit / 1024) +
      " KiB, so nothing was sent: choose a smaller history file.";
    list.replaceChildren(message);
  });

  const upload = document.getElementById("rules_file");
  upload.addEventListener("change", async () => {
    const file = upload.files[0];
    if (!file) return;
    const text = await file.text();
    if (editor) editor.setValue(text);
    else textarea.value = text;
    textarea.value = text;
    // The text is in the editor now; posting the file as well would only repeat it.
    upload.value = "";
  });
})();
