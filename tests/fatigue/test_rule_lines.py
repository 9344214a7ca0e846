"""Rule problems name the line of the faulty field, wherever TOML lets it be written."""

from __future__ import annotations

from fatigue.rules_schema import parse_rules

from .fatigue_helpers import alice, items, request


def problems_of(text: str) -> list[tuple[int | None, str | None, str]]:
    rules, problems = parse_rules(text, "rules.toml")
    assert rules is None
    return [(problem.line, problem.field, problem.message) for problem in problems]


def test_a_holdout_may_never_cover_transactional_mail():
    text = '[holdout]\npercent = 5\nsalt = "s"\nkinds = ["promotional", "transactional"]\n'
    [(line, field, message)] = problems_of(text)
    assert (line, field) == (4, "holdout.kinds")
    assert "transactional" in message and "never" in message


def test_a_holdout_of_promotional_and_editorial_mail_is_fine():
    rules, problems = parse_rules('[holdout]\npercent = 5\nkinds = ["promotional", "editorial"]\n')
    assert problems == [] and rules is not None


def test_a_field_of_an_inline_table_in_an_array_is_found_on_its_own_line():
    text = (
        "caps = [\n"
        '  { max = 3, per = "1d" },  # a comment, with { braces } and [brackets]\n'
        '  { max = 1, name = "a, [b]", per = "1w" }, { max = "three", per = "1d" },\n'
        '  { max = 2, per = "1d",   category = "" },\n'
        "]\n"
    )
    assert [(line, field) for line, field, _ in problems_of(text)] == [
        (3, "caps[2].max"),
        (4, "caps[3].category"),
    ]


def test_a_dotted_key_is_found_on_its_own_line():
    text = (
        'quiet_hours.start = "21:00"\n'
        "holdout.percent = 5\n"
        'quiet_hours.end = "25:00"\n'
        'holdout.kinds = ["transactional"]\n'
        "[store]\n"
        'retry_after = "5m"\n'
        'on_store_error = "explode"\n'
    )
    assert [(line, field) for line, field, _ in problems_of(text)] == [
        (3, "quiet_hours.end"),
        (4, "holdout.kinds"),
        (7, "store.on_store_error"),
    ]


def test_keys_inside_strings_and_comments_do_not_move_lines():
    text = (
        "[holdout]\n"
        "percent = 5\n"
        "# kinds.x = 1\n"
        'salt = """\nkinds = 3\n"""\n'
        "\n"
        "kinds = 7\n"
        "[[caps]]\n"
        "max = 1\n"
        'per = "1d"\n'
        "[[caps]]\n"
        'max = 1\nper = "1d"\n'
        'calendar = "yes"\n'
        "[diversity]\n"
        "max_items = 0\n"
    )
    assert [(line, field) for line, field, _ in problems_of(text)] == [
        (8, "holdout.kinds"),
        (15, "caps[1].calendar"),
        (17, "diversity.max_items"),
    ]


def test_an_inline_table_section_names_its_field_line():
    text = '[cooldown]\nafter_any = "1h"\n\nstore = { retry_after = "5m" }\n'
    # ``store`` here is a key of [cooldown]: unknown, on its own line.
    [(line, field, _)] = problems_of(text)
    assert (line, field) == (4, "cooldown.store")


def test_rules_built_in_python_never_hold_back_transactional_mail(store, clock):
    from fatigue.domain import Action, ContentKind
    from fatigue.governor import Governor
    from fatigue.rules import Holdout, Rules

    rules = Rules(holdout=Holdout(percent=100, kinds=(ContentKind.TRANSACTIONAL,)))
    governor = Governor(rules, store, clock)
    receipt = request(kind=ContentKind.TRANSACTIONAL)
    decision = governor.decide(alice(), receipt, items())
    assert decision.action == Action.SEND
    assert not any(reason.rule == "holdout" for reason in decision.reasons)
