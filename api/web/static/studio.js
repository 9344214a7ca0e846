// The template editor: live preview and inline problems while typing, save dialog,
// preview widths. Uses the CodeMirror bundle (window.RapportEditor) when it was built and
// plain text areas otherwise.
(function () {
  "use strict";

  const form = document.getElementById("editor-form");
  if (!form) return;
  const DELAY_MS = 350;
  const fields = ["subject", "preheader", "min_items", "mjml", "sample", "text"];
  const editors = {};
  const status = document.getElementById("preview-status");
  const frame = document.getElementById("preview-frame");
  let timer = null;
  let sequence = 0;
  let controller = null;

  function plainEditor(textarea) {
    return {
      kind: "textarea",
      setProblems() {},
      focusLine(number) {
        const lines = textarea.value.split("\n");
        const line = Math.min(Math.max(number || 1, 1), lines.length);
        const start = lines.slice(0, line - 1).reduce((sum, text) => sum + text.length + 1, 0);
        textarea.focus();
        textarea.setSelectionRange(start, start + lines[line - 1].length);
      },
    };
  }

  function setUp() {
    for (const name of fields) {
      const element = form.elements.namedItem(name);
      if (!element) continue;
      if (element.tagName === "TEXTAREA" && window.RapportEditor) {
        editors[name] = window.RapportEditor.attach(element, {
          language: element.dataset.language,
          onChange: schedule,
        });
      } else {
        editors[name] = element.tagName === "TEXTAREA" ? plainEditor(element) : null;
        element.addEventListener("input", schedule);
      }
    }
    form.dataset.editor = window.RapportEditor ? "codemirror" : "textarea";
  }

  function draft() {
    const data = {};
    for (const name of [...fields, "base", "user_id"]) {
      const element = form.elements.namedItem(name);
      if (element) data[name] = element.value;
    }
    return data;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, DELAY_MS);
  }

  async function refresh() {
    const mine = ++sequence;
    if (controller) controller.abort();
    controller = new AbortController();
    status.textContent = "Updating the preview…";
    let answer;
    try {
      const response = await fetch(form.dataset.draftUrl, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRF-Token": form.elements.namedItem("csrf_token").value,
        },
        body: JSON.stringify(draft()),
        signal: controller.signal,
        credentials: "same-origin",
      });
      answer = await response.json();
      if (!response.ok) throw new Error(answer.detail || response.statusText);
    } catch (error) {
      if (error.name === "AbortError") return;
      if (mine === sequence) status.textContent = "The preview could not be updated: " + error.message;
      return;
    }
    if (mine !== sequence) return;
    showProblems(answer.problems);
    if (answer.preview) {
      frame.srcdoc = answer.preview.html;
      document.getElementById("preview-subject").textContent = answer.preview.subject;
      document.getElementById("preview-preheader").textContent = answer.preview.preheader;
    }
    const who = form.elements.namedItem("user_id").value.trim();
    const source = who ? "customer " + who + "'s recommendations" : "the sample data";
    if (answer.error) {
      status.textContent = answer.error;
    } else if (!answer.preview) {
      status.textContent = "Showing the last preview that rendered: fix the problems first.";
    } else {
      status.textContent = "Preview with " + source + (answer.problems.length ? " (with problems)." : ".");
    }
    form.dataset.previewed = String(mine);
  }

  function where(problem) {
    const place = (problem.source || "") + (problem.line ? " line " + problem.line : "");
    return place ? place + ": " : "";
  }

  function showProblems(problems) {
    const byField = {};
    for (const problem of problems) {
      const target = problem.target || "other";
      (byField[target] = byField[target] || []).push(problem);
    }
    for (const name of fields) {
      const element = form.elements.namedItem(name);
      const note = document.getElementById(name + "-problems");
      const mine = byField[name] || [];
      if (element) element.setAttribute("aria-invalid", mine.length ? "true" : "false");
      if (note) note.textContent = mine.map((p) => (p.line ? "Line " + p.line + ": " : "") + p.message).join(" · ");
      if (editors[name] && editors[name].setProblems) editors[name].setProblems(mine);
    }
    const list = document.getElementById("problems");
    list.replaceChildren();
    if (!problems.length) return;
    const heading = document.createElement("h3");
    heading.textContent = problems.length + (problems.length === 1 ? " problem" : " problems") + " to fix before saving";
    const items = document.createElement("ul");
    for (const problem of problems) {
      const item = document.createElement("li");
      const editor = editors[problem.target];
      if (editor && editor.focusLine && problem.line) {
        const jump = document.createElement("button");
        jump.type = "button";
        jump.className = "link";
        jump.textContent = where(problem) + problem.message;
        jump.addEventListener("click", () => {
          const details = document.getElementById(problem.target).closest("details");
          if (details) details.open = true;
          editor.focusLine(problem.line);
        });
        item.append(jump);
      } else {
        item.textContent = where(problem) + problem.message;
      }
      items.append(item);
    }
    list.append(heading, items);
  }

  function wireControls() {
    const dialog = document.getElementById("save-dialog");
    document.getElementById("save-button").addEventListener("click", () => {
      dialog.showModal();
      document.getElementById("note").focus();
    });
    document.getElementById("cancel-save").addEventListener("click", () => dialog.close());
    const wrap = document.getElementById("frame-wrap");
    for (const radio of form.querySelectorAll("input[name=preview_width]")) {
      radio.addEventListener("change", () => {
        wrap.classList.toggle("mobile", radio.value === "mobile" && radio.checked);
        wrap.classList.toggle("desktop", radio.value === "desktop" && radio.checked);
      });
    }
    document.getElementById("preview-customer").addEventListener("click", refresh);
    form.elements.namedItem("user_id").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        refresh();
      }
    });
  }

  setUp();
  wireControls();
  showProblems(JSON.parse(document.getElementById("initial-problems").textContent));
  refresh();
})();
