"""The studio end to end in headless Chromium: what marketers and engineers actually do."""

from __future__ import annotations

import email
import json
import urllib.request
from email import policy
from pathlib import Path
from typing import Any

import pytest

from .conftest import browser_unavailable
from .studio_helpers import screenshot, sign_in

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture then skips, or fails under CI=true
    expect = None

pytestmark = pytest.mark.browser

TEMPLATE = "picked-for-you"
BUNDLED = Path(__file__).resolve().parents[2] / "templates" / TEMPLATE
ANCHOR = '<mj-section padding="24px 12px 8px">'
BANNER = "<mj-section><mj-column><mj-text>{}</mj-text></mj-column></mj-section>\n"


def anchor_line() -> int:
    """The 1-based line of the bundled MJML where the tests insert a section."""
    lines = (BUNDLED / "email.mjml").read_text(encoding="utf-8").splitlines()
    return next(number for number, text in enumerate(lines, 1) if ANCHOR in text)


def code_editor(page: Any) -> bool:
    return page.locator("#editor-form").get_attribute("data-editor") == "codemirror"


def wait_preview(page: Any, text: str) -> None:
    """Wait until the preview frame shows ``text``."""
    page.frame_locator("#preview-frame").get_by_text(text).first.wait_for()


def insert_before_anchor(page: Any, text: str) -> None:
    """Type ``text`` into the MJML editor at the start of the anchor line."""
    if code_editor(page):
        page.locator('[data-editor-for="mjml"] .cm-line', has_text=ANCHOR).click()
        page.keyboard.press("Home")
        page.keyboard.press("Home")
        page.keyboard.insert_text(text)
    else:
        area = page.locator("textarea#mjml")
        area.fill(area.input_value().replace(ANCHOR, text + ANCHOR, 1))


def remove_line(page: Any, text: str) -> None:
    """Delete the MJML line holding ``text``."""
    if code_editor(page):
        page.locator('[data-editor-for="mjml"] .cm-line', has_text=text).click()
        page.keyboard.press("Control+Shift+K")
    else:
        area = page.locator("textarea#mjml")
        kept = [line for line in area.input_value().split("\n") if text not in line]
        area.fill("\n".join(kept))


def mjml_changes(lines: list[str]) -> list[str]:
    """Return the added and removed lines of ``email.mjml`` in a rendered unified diff."""
    changes, inside = [], False
    for line in lines:
        text = line
        if text.startswith(("--- ", "+++ ")):
            inside = text.endswith("/email.mjml")
        elif inside and text[:1] in "+-":
            changes.append(text)
    return changes


def api(server: str, method: str, path: str, key: str, body: Any = None) -> Any:
    """Call the JSON API with a bearer key."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_sign_in_rejects_unknown_keys_and_sets_a_hardened_cookie(page, keys):
    page.goto("/studio/templates")
    assert "/studio/login" in page.url
    page.get_by_label("API key").fill("rpk_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("That API key is not known")
    sign_in(page, keys["marketer"])
    assert page.url.endswith("/studio/templates")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "rapport_studio"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert keys["marketer"] not in cookie["value"]
    screenshot(page, "01-templates-list")
    row = page.get_by_role("row", name=TEMPLATE)
    assert "marketer" not in row.inner_text()  # seeded from the bundle, not edited yet
    assert "v1" in row.inner_text()


def test_a_marketer_key_cannot_open_the_fatigue_console(page, keys):
    sign_in(page, keys["marketer"])
    response = page.goto("/studio/fatigue")
    assert response.status == 403
    assert "does not have the engineer role" in page.get_by_role("alert").inner_text()
    assert page.get_by_role("link", name="Rules").count() == 0


def test_an_engineer_key_cannot_publish_a_template(page, keys):
    sign_in(page, keys["engineer"])
    assert page.url.endswith("/studio/fatigue")
    assert "At most 3 per calendar week" in page.locator("dl.rules").inner_text()
    screenshot(page, "13-rules-in-force")
    response = page.goto(f"/studio/templates/{TEMPLATE}/publish/1")
    assert response.status == 403
    assert "does not have the marketer role" in page.get_by_role("alert").inner_text()
    screenshot(page, "09-forbidden")


def test_edit_preview_validate_save_diff_publish_and_roll_back(page, keys, server):
    sign_in(page, keys["marketer"])
    page.get_by_role("link", name=TEMPLATE, exact=True).click()
    wait_preview(page, "these are for you")
    subject = page.locator("#preview-subject")
    assert subject.inner_text() == "Amelia, we picked these for you"

    insert_before_anchor(page, BANNER.format("Fresh from the studio"))
    wait_preview(page, "Fresh from the studio")
    screenshot(page, "02-editor-live-preview")

    line = anchor_line() + 1  # the anchor moved down by the inserted line
    insert_before_anchor(page, BANNER.format("{{ favourite_colour }}"))
    problems = page.locator("#problems")
    problems.get_by_text("favourite_colour").first.wait_for()
    assert f"email.mjml line {line}" in problems.inner_text()
    assert f"Line {line}:" in page.locator("#mjml-problems").inner_text()
    if code_editor(page):
        assert page.locator('[data-editor-for="mjml"] .cm-lint-marker-error').count() >= 1
    assert page.locator("#mjml").get_attribute("aria-invalid") == "true"
    screenshot(page, "03-editor-inline-problem")

    remove_line(page, "favourite_colour")
    expect(page.locator("#problems")).to_be_empty()
    page.get_by_role("button", name="Save a version…").click()
    page.get_by_label("What changed?").fill("Add a studio banner")
    page.get_by_role("button", name="Save version").click()
    assert "Saved version 2" in page.locator(".flash").inner_text()

    page.get_by_role("link", name="History, diff and publishing").click()
    newest = page.get_by_role("row").nth(1)
    assert "v2" in newest.inner_text() and "marketer-key" in newest.inner_text()
    assert "Add a studio banner" in newest.inner_text()
    screenshot(page, "04-history")
    page.get_by_role("button", name="Compare the chosen versions").click()
    changes = mjml_changes(page.locator(".diff > *").all_inner_texts())
    assert changes == [f"+{BANNER.format('Fresh from the studio').rstrip()}"]
    screenshot(page, "05-diff")

    page.get_by_role("link", name="Back to the history").click()
    page.get_by_role("row", name="v2").get_by_role("link", name="Publish…").click()
    assert "Publish version 2" in page.get_by_role("heading", level=1).inner_text()
    page.get_by_role("button", name="Publish").click()
    assert "Version 2 of picked-for-you is live" in page.locator(".flash").inner_text()
    published = api(server, "GET", f"/v1/templates/{TEMPLATE}", keys["marketer"])
    assert published["version"] == 2 and "Fresh from the studio" in published["mjml"]

    page.get_by_role("link", name="Roll back to v1…").click()
    screenshot(page, "06-rollback-confirm")
    page.get_by_role("button", name="Roll back").click()
    assert "version 1 of picked-for-you is live again" in page.locator(".flash").inner_text()
    published = api(server, "GET", f"/v1/templates/{TEMPLATE}", keys["marketer"])
    assert published["version"] == 1 and "Fresh from the studio" not in published["mjml"]


def test_preview_widths_a_real_customer_and_the_test_download(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}")
    wait_preview(page, "these are for you")
    frame = page.locator("#preview-frame")
    desktop = frame.bounding_box()["width"]
    page.get_by_text("Mobile", exact=True).click()
    expect(frame).to_have_css("width", "375px")
    assert desktop > 600
    screenshot(page, "07-editor-mobile-preview")

    sample_first = page.frame_locator("#preview-frame").locator("img").first.get_attribute("alt")
    page.get_by_label("Customer id").fill("12347")
    page.get_by_role("button", name="Preview", exact=True).click()
    page.get_by_text("customer 12347's recommendations").wait_for()
    customer_first = page.frame_locator("#preview-frame").locator("img").first.get_attribute("alt")
    assert customer_first != sample_first

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Send test (.eml)").click()
    download = download_info.value
    assert download.suggested_filename == f"{TEMPLATE}-preview.eml"
    message = email.message_from_bytes(Path(download.path()).read_bytes(), policy=policy.default)
    assert message["Subject"] == page.locator("#preview-subject").inner_text()
    assert message["List-Unsubscribe"]
    html = message.get_body(("html",)).get_content()
    assert customer_first in html


def test_the_plain_editor_works_without_the_code_editor(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}?plain=1")
    wait_preview(page, "these are for you")
    assert page.locator(".cm-editor").count() == 0
    assert page.locator("#editor-form").get_attribute("data-editor") == "textarea"
    insert_before_anchor(page, BANNER.format("Plain but live"))
    wait_preview(page, "Plain but live")
    page.get_by_label("Subject").fill("{{ recipient.first_name }} {% if %}")
    problem = page.locator("#subject-problems")
    problem.get_by_text("Expected an expression", exact=False).wait_for()
    assert "Line 1" not in problem.inner_text()  # a one-line box has no line to point at
    assert page.locator("#subject").get_attribute("aria-invalid") == "true"
    page.get_by_label("Fewest items the email shows").fill("51")
    page.locator("#min_items-problems").get_by_text("from 0 to 50").wait_for()
    problem.get_by_text("Expected an expression", exact=False).wait_for()  # side by side
    screenshot(page, "08-plain-editor")


RULES_TOO_STRICT = """
[[caps]]
name = "weekly"
max = 1
per = "1w"
"""

BROKEN_RULES = """
[[caps]]
name = "daily"
max = "lots"
per = "1d"
"""


def upload_rules(page: Any, path: Path) -> None:
    """Choose a rule file and wait until console.js has put its text in the editor.

    The simulate page's scripts are deferred: a file chosen before they run is never loaded
    into the editor, and a submit is not checked for size in the browser. The load event
    comes after deferred scripts have run.
    """
    page.wait_for_load_state("load")
    page.get_by_label("…or upload one").set_input_files(str(path))
    expect(page.locator("textarea#rules")).to_have_value(path.read_text(encoding="utf-8"))


def history_csv(path: Path) -> Path:
    """Three customers asked three campaigns a day for two weeks."""
    header = "timestamp,user_id,type,campaign,category,kind,priority,timezone,deferrable,items"
    items = "a=0.5@shoes;b=0.4@shoes;c=0.3@hats;d=0.2@bags"
    rows = [
        f"2026-01-{5 + day:02d}T{10 + hour * 3:02d}:00:00Z,u{user},request,c{hour},sale,,,"
        f"Europe/London,,{items}"
        for day in range(14)
        for user in range(3)
        for hour in range(3)
    ]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_check_rules_and_run_a_simulation_with_charts(page, keys, tmp_path):
    sign_in(page, keys["engineer"])
    page.get_by_role("link", name="Simulate").click()
    broken = tmp_path / "broken.toml"
    broken.write_text(BROKEN_RULES, encoding="utf-8")
    upload_rules(page, broken)
    page.get_by_role("button", name="Check the rules").click()
    problems = page.locator("#rules-problems")
    assert "line 4" in problems.inner_text() and "max" in problems.inner_text()
    shown = page.locator("textarea#rules").input_value().split("\n")
    assert shown[3].startswith("max = "), "the problem's line must be the line shown"
    if page.locator(".cm-editor").count():
        assert page.locator(".cm-lint-marker-error").count() == 1
    screenshot(page, "10-rules-problem")

    strict = tmp_path / "strict.toml"
    strict.write_text(RULES_TOO_STRICT, encoding="utf-8")
    upload_rules(page, strict)
    page.get_by_label("History file").set_input_files(str(history_csv(tmp_path / "h.csv")))
    page.get_by_role("button", name="Run the simulation").click()
    summary = page.locator("#simulation-summary").inner_text()
    assert "126 history rows replayed" in summary
    charts = page.locator("figure.chart svg")
    assert charts.count() == 3
    weekly = charts.nth(0)
    assert weekly.get_attribute("aria-label") == "Customer-weeks by messages received"
    assert weekly.locator("rect title", has_text="candidate").count() > 0
    assert weekly.locator("rect title", has_text="in force").count() > 0
    assert page.get_by_role("table", name="Per campaign: candidate").count() == 1
    sent = [int(n) for n in summary.split("Sent: ")[1].split()[0:1]]
    assert sent and sent[0] > 0
    screenshot(page, "11-simulation-charts")


def test_customer_lookup_explains_caps_and_recent_decisions(page, keys, server):
    body = {
        "idempotency_key": "studio-1",
        "recipient": {"user_id": "12347", "email": "ada@example.com", "timezone": "Europe/London"},
        "template": TEMPLATE,
        "campaign": {"id": "weekly-picks", "category": "recommendations", "kind": "promotional"},
    }
    decision = api(server, "POST", "/v1/compose", keys["platform"], body)["decision"]
    assert decision["action"] == "send"
    again = {**body, "idempotency_key": "studio-2"}  # the daily cap now defers it
    deferred = api(server, "POST", "/v1/compose", keys["platform"], again)["decision"]
    [deciding] = [r for r in deferred["reasons"] if r["deciding"]]

    sign_in(page, keys["engineer"])
    page.get_by_role("link", name="Customers").click()
    page.get_by_label("Customer id").fill("12347")
    page.get_by_role("button", name="Look up").click()
    facts = page.locator("#customer-facts").inner_text()
    assert "not suppressed" in facts
    assert page.locator("#engagement-tier").inner_text().startswith("normal")
    daily = page.get_by_role("table", name="Rules evaluated for promotional messages").get_by_role(
        "row", name="daily"
    )
    assert "blocks" in daily.inner_text() and "1 / 1" in daily.inner_text()
    heading = page.get_by_role("heading", name="Promotional:")
    assert "2026-11-2" in heading.inner_text()  # not now: a later moment, after the cap
    assert decision["id"] in page.locator("#recent-sends").inner_text()
    rows = page.locator("#recent-decisions tr.decision")
    assert rows.count() == 2 and deferred["id"] in rows.first.inner_text()  # newest first
    assert "weekly-picks" in rows.first.inner_text()
    assert rows.first.locator("td").nth(2).inner_text().startswith("defer until 2026-11-2")
    rule = rows.first.locator("td.deciding-rule").inner_text()
    assert rule == f"{deciding['rule']}: {deciding['detail']}"
    assert decision["id"] in rows.nth(1).inner_text() and "send" in rows.nth(1).inner_text()
    rows.first.get_by_text(f"{len(deferred['reasons'])} rules").click()  # open the reasons
    reasons = rows.first.locator("ul.reasons li")
    assert reasons.count() == len(deferred["reasons"]) and reasons.first.is_visible()
    screenshot(page, "12-customer-lookup")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "14-customer-lookup-phone")


def test_enter_in_the_note_saves_and_enter_in_the_subject_downloads_nothing(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}")
    wait_preview(page, "these are for you")
    posted: list[str] = []
    page.on("request", lambda sent: posted.append(sent.url) if sent.method == "POST" else None)
    for field in ("Subject", "Preheader"):
        page.get_by_label(field).press("End")
        page.get_by_label(field).press("Enter")
    page.get_by_label("Subject").fill("{{ recipient.first_name }}, picked by Enter")
    page.get_by_role("button", name="Save a version…").click()
    page.get_by_label("What changed?").fill("Saved with the Enter key")
    page.get_by_label("What changed?").press("Enter")
    assert "Saved version 2" in page.locator(".flash").inner_text()
    assert not [url for url in posted if url.endswith("/test.eml")]


def test_unsaved_edits_survive_being_signed_out(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}")
    wait_preview(page, "these are for you")
    insert_before_anchor(page, BANNER.format("Kept across signing in"))
    wait_preview(page, "Kept across signing in")
    page.context.clear_cookies()  # the session expired
    page.get_by_label("Preheader").fill("Still here")
    expect(page.locator("#preview-status")).to_contain_text("You were signed out; sign in again")
    page.get_by_role("button", name="Save a version…").click()
    page.get_by_label("What changed?").fill("Banner")
    page.get_by_role("button", name="Save version").click()
    assert "You were signed out; sign in again" in page.get_by_role("alert").inner_text()
    page.get_by_label("API key").fill(keys["marketer"])
    page.get_by_role("button", name="Sign in").click()
    offer = page.locator("#restore-draft")
    expect(offer).to_be_visible()
    offer.get_by_role("button", name="Restore them").click()
    wait_preview(page, "Kept across signing in")
    assert page.get_by_label("Preheader").input_value() == "Still here"
    expect(offer).to_be_hidden()
    page.get_by_role("button", name="Save a version…").click()
    page.get_by_label("What changed?").fill("Banner")
    page.get_by_role("button", name="Save version").click()
    assert "Saved version 2" in page.locator(".flash").inner_text()
    # The saved version's page forgets the kept copy when its script runs, which a loaded
    # machine may not have done yet when the flash is already in the page.
    wait_preview(page, "Kept across signing in")
    page.goto(f"/studio/templates/{TEMPLATE}?version=1")  # saved: nothing left to offer
    wait_preview(page, "these are for you")
    expect(page.locator("#restore-draft")).to_be_hidden()


def test_a_refused_save_keeps_its_problem_after_the_preview_refreshes(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}")
    wait_preview(page, "these are for you")
    page.get_by_label("Subject").fill("{{ recipient.first_name }}, a blank note")
    page.get_by_role("button", name="Save a version…").click()
    page.get_by_label("What changed?").fill("   ")
    page.get_by_role("button", name="Save version").click()
    wait_preview(page, "these are for you")  # the page's own refresh has answered
    expect(page.locator("#preview-status")).to_contain_text("Preview with the sample data")
    assert "say what changed" in page.locator("#problems").inner_text()
    assert page.get_by_label("Subject").input_value().endswith("a blank note")
    page.get_by_role("button", name="Save a version…").click()
    assert "say what changed" in page.locator("#note-problems").inner_text()
    assert page.get_by_label("What changed?").get_attribute("aria-invalid") == "true"


def test_a_draft_over_the_size_limit_keeps_the_edits_and_names_the_limit(page, keys, app):
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}")
    wait_preview(page, "these are for you")
    insert_before_anchor(page, "<!-- " + "pasted image " * 6000 + "-->\n")
    status = page.locator("#preview-status")
    expect(status).to_contain_text("larger than the server accepts (64 KiB)")
    assert "upload" not in status.inner_text()
    page.get_by_role("button", name="Save a version…").click()
    page.get_by_label("What changed?").fill("A huge comment")
    page.get_by_role("button", name="Save version").click()
    expect(page.locator("#problems")).to_contain_text("64 KiB")
    assert "pasted image pasted image" in page.locator("textarea#mjml").input_value()
    assert "upload" not in page.locator("#problems").inner_text()


def test_a_simulation_over_the_size_limit_keeps_the_candidate_rules(page, keys, app, tmp_path):
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    sign_in(page, keys["engineer"])
    page.get_by_role("link", name="Simulate").click()
    strict = tmp_path / "strict.toml"
    strict.write_text(RULES_TOO_STRICT, encoding="utf-8")
    upload_rules(page, strict)
    history = history_csv(tmp_path / "h.csv")
    history.write_text(history.read_text() * 8, encoding="utf-8")  # about 100 KiB
    page.get_by_label("History file").set_input_files(str(history))
    page.get_by_role("button", name="Run the simulation").click()
    expect(page.locator("#rules-problems")).to_contain_text("at most 64 KiB")
    assert 'name = "weekly"' in page.locator("textarea#rules").input_value()


def test_after_a_refused_save_the_preview_says_there_is_none(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}?plain=1")
    wait_preview(page, "these are for you")
    insert_before_anchor(page, BANNER.format("{{ favourite_colour }}"))
    page.locator("#problems").get_by_text("favourite_colour").first.wait_for()
    page.get_by_role("button", name="Save a version…").click()
    page.get_by_label("What changed?").fill("A broken banner")
    page.get_by_role("button", name="Save version").click()
    status = page.locator("#preview-status")
    expect(status).to_contain_text("fix the problems first")
    assert "last preview" not in status.inner_text()
    assert "No preview" in status.inner_text()


def test_an_unknown_customer_is_previewed_as_a_new_customer(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}")
    wait_preview(page, "these are for you")
    page.get_by_label("Customer id").fill("nobody-xyz")
    page.get_by_role("button", name="Preview", exact=True).click()
    status = page.locator("#preview-status")
    expect(status).to_contain_text("customer nobody-xyz is not known to the model")
    assert "nobody-xyz's recommendations" not in status.inner_text()


def test_templates_and_history_fit_a_phone(page, keys):
    sign_in(page, keys["marketer"])
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/studio/templates", f"/studio/templates/{TEMPLATE}/history"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    screenshot(page, "15-history-phone")


def test_the_code_editor_carries_its_problems_and_its_label(page, keys):
    sign_in(page, keys["marketer"])
    page.goto(f"/studio/templates/{TEMPLATE}")
    wait_preview(page, "these are for you")
    if not code_editor(page):
        browser_unavailable("the CodeMirror bundle is not built (npm run build)")
    content = page.locator('[data-editor-for="mjml"] .cm-content')
    assert content.get_attribute("aria-describedby") == "mjml-problems"
    assert content.get_attribute("aria-invalid") == "false"
    page.locator("label[for=mjml]").click()
    assert page.evaluate("document.activeElement.closest('[data-editor-for]')?.dataset.editorFor")
    assert page.evaluate("document.activeElement.classList.contains('cm-content')")
    insert_before_anchor(page, BANNER.format("{{ favourite_colour }}"))
    page.locator("#problems").get_by_text("favourite_colour").first.wait_for()
    expect(content).to_have_attribute("aria-invalid", "true")
