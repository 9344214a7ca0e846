"""Caps scoped to a campaign or category no registered campaign has would never apply."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from fatigue.cli import rules as rules_group
from fatigue.rules import load_rules
from fatigue.scopes import Registered, read_registered, unreachable_caps

RULES = """\
[[caps]]
max = 3
per = "1d"

[[caps]]
name = "recs"
max = 1
per = "1d"
category = "recomendations"

[[caps]]
max = 2
per = "1w"
campaign = "black-friday"
"""

REGISTRY = """\
[campaigns.weekly-picks]
category = "recommendations"
kind = "promotional"

[campaigns.spring-sale]
category = "sale"
"""


def test_a_misspelt_category_and_an_unknown_campaign_are_named_with_line_and_field():
    rules = load_rules(RULES)
    registered = Registered({"weekly-picks": "recommendations", "spring-sale": "sale"}, "c.toml")
    problems = unreachable_caps(rules, registered)
    assert [(p.source, p.line, p.field) for p in problems] == [
        ("<rules>", 9, "caps[1].category"),
        ("<rules>", 14, "caps[2].campaign"),
    ]
    assert problems[0].message == (
        "no campaign in c.toml has category 'recomendations' (categories: recommendations, "
        "sale): this cap would never apply"
    )
    assert "'black-friday' is not in c.toml (registered: spring-sale, weekly-picks)" in (
        problems[1].message
    )


def test_scopes_every_registered_campaign_can_reach_are_fine():
    rules = load_rules(
        '[[caps]]\nmax = 1\nper = "1d"\ncategory = "sale"\n'
        '[[caps]]\nmax = 1\nper = "1d"\ncampaign = "weekly-picks"\ncategory = "recommendations"\n'
    )
    registered = Registered({"weekly-picks": "recommendations", "spring-sale": "sale"})
    assert unreachable_caps(rules, registered) == []


def test_a_campaign_registered_without_a_category_takes_any_category():
    """The request then says the category: no category cap can be called unreachable."""
    rules = load_rules('[[caps]]\nmax = 1\nper = "1d"\ncategory = "anything"\n')
    assert unreachable_caps(rules, Registered({"digest": "", "sale": "sale"})) == []


def test_a_cap_on_a_campaign_and_another_category_than_its_registered_one():
    rules = load_rules('[[caps]]\nmax = 1\nper = "1d"\ncampaign = "sale"\ncategory = "news"\n')
    [problem] = unreachable_caps(rules, Registered({"sale": "sale"}))
    assert (problem.line, problem.field) == (5, "caps[0].category")
    assert "registered with category 'sale', not 'news'" in problem.message


def test_rules_validate_checks_against_the_registry(tmp_path: Path, monkeypatch):
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    registry = tmp_path / "campaigns.toml"
    registry.write_text(REGISTRY)
    assert read_registered(registry).campaigns == {
        "weekly-picks": "recommendations",
        "spring-sale": "sale",
    }
    result = CliRunner().invoke(rules_group, ["validate", str(rules), "--campaigns", str(registry)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{rules}:9 [caps[1].category]: no campaign in {registry} has")
    assert lines[1].startswith(f"{rules}:14 [caps[2].campaign]: campaign 'black-friday'")
    # The server's setting is the default; without any registry the file is valid.
    monkeypatch.setenv("RAPPORT_CAMPAIGNS_FILE", str(registry))
    assert CliRunner().invoke(rules_group, ["validate", str(rules)]).exit_code == 1
    monkeypatch.delenv("RAPPORT_CAMPAIGNS_FILE")
    result = CliRunner().invoke(rules_group, ["validate", str(rules)])
    assert result.exit_code == 0 and "valid (3 cap(s)" in result.output


def test_an_unreadable_registry_is_one_error_line(tmp_path: Path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[caps]]\nmax = 1\nper = "1d"\n')
    missing = tmp_path / "nope.toml"
    result = CliRunner().invoke(rules_group, ["validate", str(rules), "--campaigns", str(missing)])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {missing}: cannot read the campaign registry")
