"""The MIME message: text first, HTML last, RFC 8058 headers kept on one unencoded line."""

from __future__ import annotations

import email
from email import policy

import pytest

from engine.render.links import Campaign
from engine.render.mime import (
    POLICY,
    MessageParts,
    build_message,
    message_bytes,
    message_headers,
    message_id,
    serialise,
    write_message,
)
from engine.render.renderer import RenderContext
from fatigue.errors import ValidationError

LONG_URL = "https://mail.example.com/u/" + "x" * 180


def header_lines(raw: bytes, name: str) -> list[bytes]:
    """Return the raw physical lines of header ``name`` (first line plus folded ones)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(head) if line.lower().startswith(name.lower().encode()))
    lines = [head[start]]
    for line in head[start + 1 :]:
        if not line[:1].isspace():
            break
        lines.append(line)
    return lines


def test_list_unsubscribe_stays_one_unencoded_line() -> None:
    parts = MessageParts("Hi", "text", "<p>html</p>", LONG_URL, unsubscribe_mailto="u@m.example")
    raw = message_bytes(build_message(parts))
    (line,) = header_lines(raw, "List-Unsubscribe:")
    assert line == f"List-Unsubscribe: <{LONG_URL}>, <mailto:u@m.example>".encode()
    assert b"=?" not in line
    (post,) = header_lines(raw, "List-Unsubscribe-Post:")
    assert post == b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    assert POLICY.max_line_length == 998


def test_the_stock_policy_would_have_folded_it() -> None:
    # Why POLICY exists: the default SMTP policy folds the header at 78 characters.
    message = build_message(MessageParts("Hi", "t", "<p>h</p>", LONG_URL))
    raw = message.as_bytes(policy=policy.SMTP)
    assert len(header_lines(raw, "List-Unsubscribe:")) > 1


def test_alternatives_are_text_then_html_and_round_trip() -> None:
    parts = MessageParts("Café ☕", "plain é", "<p>rich é</p>", LONG_URL, to="a@example.com")
    parsed = email.message_from_bytes(message_bytes(build_message(parts)), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert text.get_content_type() == "text/plain" and text.get_content().strip() == "plain é"
    assert html.get_content_type() == "text/html" and "rich é" in html.get_content()
    assert parsed["Subject"] == "Café ☕"
    assert parsed["List-Unsubscribe"] == f"<{LONG_URL}>"


def test_recipient_data_cannot_inject_headers(renderer) -> None:
    context = RenderContext(
        {"user_id": "u1", "first_name": "Eve\r\nBcc: victim@example.com", "email": "e@example.com"},
        [{"item_id": "1", "title": "Mug", "url": "https://s.example/1", "image_url": "https://s.example/1.jpg",
          "price": 1, "currency": "GBP"}],
        Campaign("c"),
    )  # fmt: skip
    rendered = renderer.render("picked-for-you", context)
    parsed = email.message_from_bytes(rendered.mime_bytes, policy=policy.default)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Eve Bcc: victim@example.com, we picked these for you"
    assert "\n" not in rendered.subject
    assert parsed["From"] == "Shop <news@shop.example.com>"
    assert parsed["Date"] == "Mon, 02 Mar 2026 09:30:00 +0000"


def _parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def test_fast_writer_matches_the_standard_library_reference() -> None:
    long_html = "<p>" + "é" * 1200 + "</p>\n<p>end</p>"  # one line past 998 octets
    parts = MessageParts(
        "Léa, notre sélection pour vous, avec un sujet assez long pour être replié",
        "Bonjour Léa\nligne deux\n",
        long_html,
        LONG_URL,
        to="lea@example.com",
        sender="Boutique <news@shop.example.com>",
        unsubscribe_mailto="u@m.example",
        extra_headers=(("X-Rapport-Template", "picked-for-you/3"),),
    )
    headers, raw = write_message(parts)
    fast, reference = _parsed(raw), _parsed(message_bytes(build_message(parts)))
    for name in ("From", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post",
                 "X-Rapport-Template", "MIME-Version"):  # fmt: skip
        assert fast[name] == reference[name] == headers[name]
    assert fast.get_content_type() == reference.get_content_type() == "multipart/alternative"
    for mine, theirs in zip(fast.iter_parts(), reference.iter_parts(), strict=True):
        assert mine.get_content_type() == theirs.get_content_type()
        assert mine.get_content().replace("\r\n", "\n") == theirs.get_content().replace(
            "\r\n", "\n"
        )
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert fast.get_body(("html",))["Content-Transfer-Encoding"] == "quoted-printable"
    (line,) = header_lines(raw, "List-Unsubscribe:")
    assert line == f"List-Unsubscribe: <{LONG_URL}>, <mailto:u@m.example>".encode()


def test_fast_writer_keeps_headers_on_one_line_and_refuses_injection() -> None:
    parts = MessageParts("Hi\r\nBcc: x@example.com", "t", "<p>h</p>", LONG_URL)
    headers, raw = write_message(parts)
    assert _parsed(raw)["Bcc"] is None
    assert headers["Subject"] == "Hi Bcc: x@example.com"
    assert b"\r\nBcc:" not in raw


def test_addresses_are_never_encoded_words_only_display_names_are() -> None:
    """An encoded word hides an address from mail servers; an IDN domain goes as xn--."""
    parts = MessageParts(
        "Hi", "text\n", "<p>html</p>", LONG_URL,
        to="léa@exämple.com", sender="Boutique Été <news@shop.example.com>",
    )  # fmt: skip
    _, raw = write_message(parts)
    (sender,) = header_lines(raw, "From:")
    (to,) = header_lines(raw, "To:")
    assert sender.endswith(b" <news@shop.example.com>") and b"=?utf-8?" in sender
    assert to == "To: léa@xn--exmple-cua.com".encode()  # UTF-8 local part: RFC 6532
    parsed = _parsed(raw)
    assert parsed["From"].addresses[0].display_name == "Boutique Été"
    assert parsed["From"].addresses[0].addr_spec == "news@shop.example.com"


def test_long_subjects_fold_lone_carriage_returns_break_and_a_message_id_is_set() -> None:
    parts = MessageParts(
        "A" * 1200, "one\rtwo\n", "<p>a\rb</p>", LONG_URL, to="a@example.com",
        message_id="<d1.dTE@shop.example>",
    )  # fmt: skip
    _, raw = write_message(parts)
    assert max(map(len, raw.split(b"\r\n"))) <= 998
    assert b"\r" not in raw.replace(b"\r\n", b"")
    parsed = _parsed(raw)
    assert parsed["Subject"] == "A" * 1200 and parsed["Message-ID"] == "<d1.dTE@shop.example>"


def test_a_decisions_email_keeps_its_message_id_and_previews_get_their_own(renderer) -> None:
    """Named after the decision: a retried compose gives the same id, so receivers dedupe it."""
    item = {"item_id": "1", "title": "Mug", "url": "https://s.example/1", "price": 2.0}
    context = RenderContext({"user_id": "u1"}, [item], Campaign("c1"), {"decision_id": "d42.dTE"})
    first = renderer.render("picked-for-you", context).mime_bytes
    again = renderer.render("picked-for-you", context).mime_bytes
    assert _parsed(first)["Message-ID"] == _parsed(again)["Message-ID"]
    assert _parsed(first)["Message-ID"].startswith("<d42.dTE@")
    preview = _parsed(renderer.preview("picked-for-you").mime_bytes)["Message-ID"]
    assert preview.startswith("<") and preview.endswith(">") and "d42" not in preview


def test_text_that_looks_like_an_encoded_word_is_encoded_not_decoded() -> None:
    """RFC 2047 section 5: a name such as "=?utf-8?b?...?=" must not become another subject."""
    forged = "=?utf-8?b?WW91ciBhY2NvdW50IGlzIHN1c3BlbmRlZA==?="
    headers, raw = write_message(MessageParts(f"{forged}, hello", "t", "<p>h</p>", LONG_URL))
    assert _parsed(raw)["Subject"] == headers["Subject"] == f"{forged}, hello"


def test_control_characters_never_reach_a_header() -> None:
    parts = MessageParts("Ada\x00Bob\x1b[31m\x7f", "t", "<p>h</p>", LONG_URL, to="a@example.com")
    headers, raw = write_message(parts)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(byte < 0x20 and byte not in b"\r\n" for byte in head) and b"\x7f" not in head
    assert headers["Subject"] == _parsed(raw)["Subject"] == "AdaBob[31m"


def test_machine_made_headers_are_never_encoded_words() -> None:
    """A Message-ID or unsubscribe URL long enough to be encoded would stop being one."""
    url = "https://mail.example.com/u/" + "x" * 940
    long_key = "d1." + "😀" * 200
    parts = MessageParts("Hi", "t", "<p>h</p>", url, message_id=message_id(long_key, "s.example"))
    _, raw = write_message(parts)
    parsed = _parsed(raw)
    assert parsed["List-Unsubscribe"] == f"<{url}>"
    assert not parsed["Message-ID"].defects and b"=?" not in b"".join(header_lines(raw, "Mess"))
    assert message_id(long_key, "s.example") == message_id(long_key, "s.example")  # retries


def test_an_unsubscribe_link_too_long_for_its_line_is_refused_naming_the_id() -> None:
    url = "https://mail.example.com/u/" + "x" * 980
    with pytest.raises(ValidationError) as caught:
        write_message(MessageParts("Hi", "t", "<p>h</p>", url))
    (problem,) = caught.value.problems
    assert problem.field == "recipient.user_id" and "List-Unsubscribe" in problem.message


def test_the_date_header_shows_each_message_its_own_zone_and_second() -> None:
    """Dates are formatted once a second; the same instant in two zones keeps both offsets."""
    from datetime import UTC, datetime, timedelta, timezone
    from email.utils import format_datetime
    from zoneinfo import ZoneInfo

    instant = datetime(2026, 3, 2, 9, 30, 0, 999_999, tzinfo=UTC)
    moments = [
        instant, instant.astimezone(timezone(timedelta(hours=2))),
        instant.astimezone(ZoneInfo("America/New_York")), instant + timedelta(microseconds=1),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC), datetime(2026, 3, 2, 9, 30),
        datetime(1300, 6, 1, 12, 0, 0, 999_999, tzinfo=UTC),  # a float timestamp rounds up
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-2))),  # shifted out of range
    ]  # fmt: skip
    for moment in moments:
        headers, _ = write_message(MessageParts("Hi", "t", "<p>h</p>", LONG_URL, date=moment))
        assert headers["Date"] == format_datetime(moment), moment


def test_every_message_gets_its_own_unguessable_boundary() -> None:
    import re

    from engine.render.mime import envelope

    parts = MessageParts("Hi", "plain", "<p>rich</p>", LONG_URL, to="a@example.com")
    boundaries = [envelope(parts)[1] for _ in range(2000)]  # past one buffered read of ids
    assert len(set(boundaries)) == len(boundaries)
    assert all(re.fullmatch(r"=_rapport_[0-9a-f]{20}", boundary) for boundary in boundaries)


def _one_line_in_full(value: str) -> str:
    """What one_line always did, for every value: the reference its shortcut must agree with."""
    from engine.render.mime import _CONTROLS

    return " ".join(value.split()).translate(_CONTROLS)


def test_one_line_gives_what_the_full_rewrite_gives_for_every_character_it_changes() -> None:
    from engine.render.mime import _CONTROLS, one_line

    # The rewrite changes only whitespace (as str.split sees it) and the dropped controls.
    changed = [chr(code) for code in range(0x110000) if chr(code).isspace() or code in _CONTROLS]
    assert len(changed) > 60
    for character in changed:
        for value in (character, f"a{character}b", f"a {character} b"):
            assert one_line(value) == _one_line_in_full(value), hex(ord(character))


@pytest.mark.parametrize(
    "value",
    ["", " ", "Hi  there", " Hi", "Hi ", "Hi\tthere", "a\r\nBcc: x@y", "Zoë, 50%!",
     "no\u00a0break", "line\u2028sep", "ideo\u3000space", "nul\x00del\x7f", "soft\u00adhyphen"],
)  # fmt: skip
def test_one_line_leaves_single_line_text_alone_and_folds_the_rest(value: str) -> None:
    from engine.render.mime import one_line

    assert one_line(value) == _one_line_in_full(value)


def test_parts_made_at_once_are_the_parts_their_constructor_makes() -> None:
    import dataclasses
    import inspect
    from datetime import UTC, datetime

    names = [field.name for field in dataclasses.fields(MessageParts)]
    assert list(inspect.signature(MessageParts.made).parameters) == names  # none forgotten
    values = dict(
        subject="Hi", text="t", html="<p>h</p>", unsubscribe_url=LONG_URL, to="a@example.com",
        sender="Shop <s@example.com>", unsubscribe_mailto="u@m.x",
        date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        extra_headers=(("X-Rapport-Template", "t/1"),), message_id="<d1@s.example>",
    )  # fmt: skip
    made, built = MessageParts.made(**values), MessageParts(**values)  # type: ignore[arg-type]
    assert made == built and vars(made) == vars(built) and hash(made) == hash(built)
    headers = message_headers(built)
    assert message_headers(made) == headers
    assert serialise(made, headers, "b") == serialise(built, headers, "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.subject = "changed"  # type: ignore[misc]
