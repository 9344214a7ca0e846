// The studio's code editor: CodeMirror 6 over a <textarea>, bundled by `npm run build`.
// studio.js uses window.RapportEditor when this bundle is present and keeps the plain
// <textarea> otherwise, so every page works without npm.
import { EditorView, basicSetup } from "codemirror";
import { html } from "@codemirror/lang-html";
import { jinja } from "@codemirror/lang-jinja";
import { json } from "@codemirror/lang-json";
import { lintGutter, setDiagnostics } from "@codemirror/lint";

function language(name) {
  if (name === "jinja-html") return jinja({ base: html() });
  if (name === "jinja") return jinja();
  if (name === "json") return json();
  return [];
}

function attach(textarea, options = {}) {
  const onChange = options.onChange || (() => {});
  const label = textarea.labels && textarea.labels[0] ? textarea.labels[0].textContent : "";
  // The hidden textarea is not what a screen reader is on: its problems and its "invalid"
  // state belong on the editable element.
  const describedBy = textarea.getAttribute("aria-describedby");
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      lintGutter(),
      language(options.language),
      EditorView.lineWrapping,
      EditorView.contentAttributes.of({
        "aria-label": label.trim() || textarea.name,
        ...(describedBy ? { "aria-describedby": describedBy } : {}),
      }),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) {
          // The form posts the textarea, so it always holds what the editor shows.
          textarea.value = update.state.doc.toString();
          onChange();
        }
      }),
    ],
  });
  textarea.insertAdjacentElement("afterend", view.dom);
  textarea.hidden = true;
  view.dom.dataset.editorFor = textarea.name;
  // Set on the element, not through contentAttributes: CodeMirror leaves alone what it did not set.
  view.contentDOM.setAttribute("aria-invalid", "false");
  for (const element of textarea.labels || []) {
    // A label focuses its control, and the hidden textarea cannot take focus: the editor does.
    element.addEventListener("click", (event) => {
      event.preventDefault();
      view.focus();
    });
  }

  function lineAt(number) {
    const doc = view.state.doc;
    return doc.line(Math.min(Math.max(number || 1, 1), doc.lines));
  }

  return {
    kind: "codemirror",
    setProblems(problems) {
      const diagnostics = problems.map((problem) => {
        const line = lineAt(problem.line);
        return { from: line.from, to: line.to, severity: "error", message: problem.message };
      });
      view.dispatch(setDiagnostics(view.state, diagnostics));
      view.contentDOM.setAttribute("aria-invalid", problems.length ? "true" : "false");
    },
    setValue(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    focusLine(number) {
      const line = lineAt(number);
      view.dispatch({ selection: { anchor: line.from, head: line.to }, scrollIntoView: true });
      view.focus();
    },
  };
}

window.RapportEditor = { attach };
