// The template editor: live preview and inline problems while typing, save dialog,
// preview widths. Uses the CodeMirror bundle (window.RapportEditor) when it was built and
// plain text areas otherwise.
(function () {
  "use strict";

  const form = document.getElementById("editor-form");
  if (!form) return;
  const DELAY_MS = 350;
  const fields = ["subject", "preheader", "min_items", "max_items", "mjml", "sample", "text"];
  const editors = {};
  const status = document.getElementById("preview-status");
  const frame = document.getElementById("preview-frame");
  // Every field a marketer types into, kept in this tab until saved: a refused save, a session
  // that ended or a page left by mistake must never cost the edits.
  const KEPT = [...fields, "note", "user_id"];
  const storageKey = "rapport.draft:" + form.dataset.template + ":" + form.elements.namedItem("base").value;
  let timer = null;
  let sequence = 0;
  let controller = null;
  let rendered = false;
  let opened = {};
  // Problems only a submission finds (no change note, a newer version): the live check cannot
  // see them, so they stay on screen until the next submission rather than vanish on load.
  const initial = JSON.parse(document.getElementById("initial-problems").textContent);
  const standing = initial.filter((problem) => problem.standing);
  let live = initial.filter((problem) => !problem.standing);
  const PROBLEM_FIELDS = [...fields, "note", "overwrite", "user_id"];

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
    remember();
    clearTimeout(timer);
    timer = setTimeout(refresh, DELAY_MS);
  }

  function values() {
    const data = {};
    for (const name of KEPT) {
      const element = form.elements.namedItem(name);
      if (element) data[name] = element.value;
    }
    return data;
  }

  function same(one, other) {
    return KEPT.every((name) => (one[name] ?? null) === (other[name] ?? null));
  }

  function remember() {
    try {
      const now = values();
      if (same(now, opened)) sessionStorage.removeItem(storageKey);
      else sessionStorage.setItem(storageKey, JSON.stringify(now));
    } catch (error) {
      // Storage full or switched off: the editor still works, only without this safety net.
    }
  }

  function forgetSaved() {
    try {
      for (const key of JSON.parse(form.dataset.savedDrafts || "[]")) {
        sessionStorage.removeItem("rapport.draft:" + key);
      }
    } catch (error) {
      // Nothing kept, nothing to forget.
    }
  }

  function offerRestore() {
    let kept = null;
    try {
      kept = JSON.parse(sessionStorage.getItem(storageKey) || "null");
    } catch (error) {
      return;
    }
    if (!kept || same(kept, opened)) return;
    const offer = document.getElementById("restore-draft");
    offer.hidden = false;
    document.getElementById("restore-yes").addEventListener("click", () => {
      restore(kept);
      offer.hidden = true;
      remember();
      refresh();
    });
    document.getElementById("restore-no").addEventListener("click", () => {
      offer.hidden = true;
      try {
        sessionStorage.removeItem(storageKey);
      } catch (error) {
        // Already gone.
      }
    });
  }

  function restore(kept) {
    for (const name of KEPT) {
      const element = form.elements.namedItem(name);
      if (!element || typeof kept[name] !== "string") continue;
      if (editors[name] && editors[name].setValue) editors[name].setValue(kept[name]);
      else element.value = kept[name];
    }
  }

  function encodedSize(submitter) {
    const body = new URLSearchParams(submitter ? new FormData(form, submitter) : new FormData(form)).toString();
    // A form sends line breaks as CRLF, whichever FormData holds.
    return body.replace(/(?<!%0D)%0A/g, "%0D%0A").length;
  }

  // The server refuses a body over its limit unread; checking here keeps the page as it is.
  function refuseIfTooLarge(event) {
    const limit = Number(form.dataset.maxBytes);
    const kept = standing.filter((problem) => problem.kind !== "size");
    standing.splice(0, standing.length, ...kept);
    const size = encodedSize(event.submitter);
    if (!limit || size <= limit) return;
    event.preventDefault();
    document.getElementById("save-dialog").close();
    const kib = (bytes) => Math.ceil(bytes / 1024) + " KiB";
    standing.push({
      kind: "size",
      standing: true,
      target: "mjml",
      source: "Draft",
      message: "the draft is " + kib(size) + " when sent and the server accepts at most " +
        kib(limit) + ", so it was not sent: make the email smaller (link to images rather than pasting them in).",
    });
    showProblems(live.concat(standing));
    document.getElementById("problems").scrollIntoView({ block: "nearest" });
  }

  function signedOut() {
    const link = document.createElement("a");
    link.href = form.dataset.loginUrl;
    link.textContent = "sign in again";
    status.replaceChildren("You were signed out; ", link, ". Your changes are kept in this tab.");
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
      if (response.status === 401) {
        if (mine === sequence) signedOut();
        return;
      }
      answer = await response.json();
      if (!response.ok) throw new Error(answer.detail || response.statusText);
    } catch (error) {
      if (error.name === "AbortError") return;
      if (mine === sequence) status.textContent = "The preview could not be updated: " + error.message;
      return;
    }
    if (mine !== sequence) return;
    live = answer.problems;
    showProblems(live.concat(standing));
    if (answer.preview) {
      rendered = true;
      frame.srcdoc = answer.preview.html;
      document.getElementById("preview-subject").textContent = answer.preview.subject;
      document.getElementById("preview-preheader").textContent = answer.preview.preheader;
    }
    // The server says what the preview shows: a known customer's picks, or a new customer's.
    const source = answer.showing || "the sample data";
    if (answer.error) {
      status.textContent = answer.error;
    } else if (!answer.preview) {
      // A page opened on a refused draft has never rendered one: say so, not "the last".
      status.textContent = rendered
        ? "Showing the last preview that rendered: fix the problems first."
        : "No preview: the draft does not render yet; fix the problems first.";
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
    for (const name of PROBLEM_FIELDS) {
      const element = form.elements.namedItem(name);
      const note = document.getElementById(name + "-problems");
      const mine = byField[name] || [];
      if (element && element.setAttribute) element.setAttribute("aria-invalid", mine.length ? "true" : "false");
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
    for (const name of ["subject", "preheader", "min_items", "max_items"]) {
      // Enter in a one-line field would submit the form; here it only refreshes the preview.
      form.elements.namedItem(name).addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          refresh();
        }
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
  opened = values();
  forgetSaved();
  offerRestore();
  for (const name of ["note", "user_id"]) form.elements.namedItem(name).addEventListener("input", remember);
  form.addEventListener("submit", (event) => {
    remember();
    refuseIfTooLarge(event);
  });
  // A refused save or test answers with this page at the POST's address: reloading it must
  // open the editor again, not post the form a second time.
  if (form.dataset.posted === "true") history.replaceState(null, "", form.dataset.editorUrl);
  showProblems(initial);
  refresh();
})();
