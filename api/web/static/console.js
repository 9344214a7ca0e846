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
