from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from fatigue.domain import Channel
from fatigue.errors import ValidationError
from fatigue.rules import StoreErrorPolicy, default_rules, load_rules, validate

from .conftest import CONTRACT
from .fatigue_helpers import alice, items, request


def test_contract_file_from_the_issue_loads():
    rules = load_rules(CONTRACT)
    cap = rules.caps[0]
    assert (cap.max, cap.per, cap.channel, cap.calendar) == (
        3,
        timedelta(days=1),
        Channel.EMAIL,
        False,
    )
    assert rules.cooldown is not None and rules.cooldown.after_any == timedelta(hours=16)
    assert rules.quiet_hours is not None
    assert (rules.quiet_hours.start, rules.quiet_hours.end) == (time(21), time(8))
    assert rules.default_timezone == "Europe/London"
    assert rules.relevance is not None and rules.relevance.min_items == 3
    assert rules.holdout is not None and rules.holdout.percent == 0
    assert rules.store.on_store_error == StoreErrorPolicy.DEFER


def test_one_cap_alone_is_a_valid_file_and_missing_sections_are_off():
    rules = load_rules('[[caps]]\nmax = 1\nper = "1w"\n')
    assert len(rules.caps) == 1
    assert rules.cooldown is None and rules.quiet_hours is None and rules.relevance is None
    assert rules.holdout is None and rules.engagement is None


def test_empty_file_is_valid():
    assert load_rules("").caps == ()


def test_loads_from_a_path(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text(CONTRACT)
    assert load_rules(path).source == str(path)
    assert load_rules(str(path)).caps[0].max == 3


def test_unknown_key_is_an_error_naming_key_and_line():
    text = '[[caps]]\nmax = 3\nper = "1d"\n\n[cooldown]\nafter_anny = "16h"\n'
    with pytest.raises(ValidationError) as caught:
        load_rules(text)
    problem = next(p for p in caught.value.problems if "after_anny" in p.message)
    assert problem.line == 6
    assert problem.field == "cooldown.after_anny"


def test_every_problem_is_reported_at_once_with_lines():
    text = "\n".join(
        [
            "[[caps]]",  # 1
            "max = 3",  # 2
            'per = "1d"',  # 3
            "[[caps]]",  # 4
            "max = true",  # 5
            'per = "2x"',  # 6
            "[quiet_hours]",  # 7
            'start = "25:00"',  # 8
            'end = "08:00"',  # 9
            'default_timezone = "Mars/Olympus"',  # 10
            "[relevance]",  # 11
            "min_relevance = 1.5",  # 12
            "[bogus]",  # 13
        ]
    )
    problems = validate(text)
    found = {(p.field, p.line) for p in problems}
    assert ("caps[1].max", 5) in found
    assert ("caps[1].per", 6) in found
    assert ("quiet_hours.start", 8) in found
    assert ("quiet_hours.default_timezone", 10) in found
    assert ("relevance.min_relevance", 12) in found
    assert ("bogus", 13) in found
    assert len(problems) == 6


def test_missing_required_key_is_named():
    problems = validate("[[caps]]\nmax = 3\n")
    assert [(p.field, p.line) for p in problems] == [("caps[0].per", 1)]
    assert "missing required key 'per'" in problems[0].message


@pytest.mark.parametrize("key", ["category", "campaign"])
def test_a_blank_cap_scope_is_refused_not_read_differently_by_each_store(key):
    problems = validate(f'[[caps]]\nmax = 1\nper = "1d"\n{key} = " "\n')
    assert [(p.field, p.line) for p in problems] == [(f"caps[0].{key}", 4)]
    assert "leave the key out" in problems[0].message


def test_calendar_window_must_be_days_or_weeks():
    problems = validate('[[caps]]\nmax = 3\nper = "12h"\ncalendar = true\n')
    assert [(p.field, p.line) for p in problems] == [("caps[0].per", 3)]


def test_toml_syntax_error_has_a_line():
    problems = validate('[[caps]]\nmax = 3\nper = "1d\n')
    assert len(problems) == 1 and problems[0].line == 3
    assert "not valid TOML" in problems[0].message


def test_missing_file_is_a_problem_not_a_crash(tmp_path: Path):
    problems = validate(tmp_path / "absent.toml")
    assert "cannot read rule file" in problems[0].message


def test_error_message_names_source_line_and_field(tmp_path: Path):
    path = tmp_path / "r.toml"
    path.write_text("[holdout]\npercent = 120\n")
    with pytest.raises(ValidationError) as caught:
        load_rules(path)
    assert str(caught.value) == f"{path}:2 [holdout.percent]: must be between 0 and 100, got 120"


def test_default_cap_name_shows_scope_and_window():
    rules = load_rules('[[caps]]\nmax = 2\nper = "7d"\ncategory = "sale"\ncalendar = true\n')
    assert rules.caps[0].name == "cap:sale:2/7d"
    assert rules.caps[0].calendar_unit == "d"


def test_bundled_default_rules_are_valid():
    rules = default_rules()
    assert rules.caps and rules.engagement is not None and rules.send_time is not None


@pytest.mark.parametrize("policy", list(StoreErrorPolicy))
def test_contract_file_takes_a_store_section_with_every_policy(policy):
    rules = load_rules(
        f'{CONTRACT}\n[store]\non_store_error = "{policy.value}"\nretry_after = "2m"\n'
    )
    assert rules.store.on_store_error == policy
    assert rules.store.retry_after == timedelta(minutes=2)
    assert rules.caps[0].max == 3  # the contract itself is unchanged


def test_an_unknown_store_policy_names_its_key_and_line():
    problems = validate(CONTRACT + '\n[store]\non_store_error = "ignore"\n')
    [problem] = problems
    assert problem.field == "store.on_store_error" and "'ignore' is not one of" in problem.message
    assert problem.line == CONTRACT.count("\n") + 3


def test_decision_log_ttl_is_a_store_duration_with_a_default():
    assert load_rules(CONTRACT).store.decision_log_ttl == timedelta(days=30)
    rules = load_rules(f'{CONTRACT}\n[store]\ndecision_log_ttl = "7d"\n')
    assert rules.store.decision_log_ttl == timedelta(days=7)
    [problem] = validate(f'{CONTRACT}\n[store]\ndecision_log_ttl = "soon"\n')
    assert problem.field == "store.decision_log_ttl" and problem.line is not None


def test_the_readme_contract_file_loads_and_is_the_one_the_tests_use() -> None:
    """The rule file users copy from the README must keep working, exactly as tested."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    after = readme.split("The minimal file every version accepts:", 1)[1]
    block = after.split("```toml\n", 1)[1].split("```", 1)[0]
    assert load_rules(block) == load_rules(CONTRACT)


def test_settings_that_together_could_never_send_are_refused():
    problems = validate(
        "[relevance]\nmin_relevance = 0.1\nmin_items = 3\n[diversity]\nmax_items = 2\n"
    )
    assert [(p.field, p.line) for p in problems] == [("diversity.max_items", 5)]
    assert "could ever hold enough items" in problems[0].message


def test_durations_too_long_to_compute_or_zero_ttls_are_problems_not_crashes():
    for text, field in (
        ('[[caps]]\nmax = 1\nper = "99999999999d"\n', "caps[0].per"),
        ('[[caps]]\nmax = 1\nper = "800000d"\n', "caps[0].per"),
        ('[store]\nidempotency_ttl = "0s"\n', "store.idempotency_ttl"),
        ('[store]\nretry_after = "0m"\n', "store.retry_after"),
    ):
        problems = validate(text)
        assert [p.field for p in problems] == [field], text


def test_a_ten_year_cap_decides_and_explains(make_governor):
    governor = make_governor('[[caps]]\nmax = 1\nper = "520w"\n')
    first = governor.decide(alice(), request(), items())
    second = governor.decide(alice(), request(), items())
    assert first.action == "send" and second.action == "defer"
    assert second.send_at is not None and second.send_at.year >= 2035
    assert governor.explain("alice").next_allowed


def test_two_caps_of_one_name_are_refused_with_the_second_ones_line():
    text = (
        '[[caps]]\nname = "daily"\nmax = 1\nper = "1d"\n\n'
        '[[caps]]\nname = "daily"\nmax = 3\nper = "1w"\n'
    )
    problems = validate(text)
    assert [(p.line, p.field) for p in problems] == [(7, "caps[1].name")]
    assert "already named 'daily' (caps[0])" in problems[0].message


def test_a_rule_file_saved_with_a_byte_order_mark_loads(tmp_path):
    """Some editors write one first; it is not content (TOML would call it an invalid key)."""
    path = tmp_path / "rules.toml"
    path.write_bytes(b"\xef\xbb\xbf" + CONTRACT.encode("utf-8"))
    assert load_rules(path).caps == load_rules(CONTRACT).caps
