"""A rule file nested too deeply is a problem with the file, not a crash.

``tomllib`` parses arrays and inline tables recursively, so text nested thousands deep raised
RecursionError (a 500 from the API) instead of saying what is wrong.
"""

from __future__ import annotations

import pytest

from fatigue.errors import ValidationError
from fatigue.rules import load_rules
from fatigue.rules_schema import parse_rules

DEEP = {
    "arrays": "a = " + "[" * 50_000 + "]" * 50_000,
    "inline-tables": "a = " + "{b=" * 5_000 + "1" + "}" * 5_000,
    "arrays-in-a-cap": '[[caps]]\nname = "d"\nmax = ' + "[" * 50_000 + "]" * 50_000,
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deeply_nested_rules_are_a_problem_naming_the_source(text: str) -> None:
    rules, problems = parse_rules(text, "rules.toml")
    assert rules is None
    assert [problem.source for problem in problems] == ["rules.toml"]
    assert "nests too deeply" in problems[0].message


def test_loading_deeply_nested_rules_raises_the_validation_error() -> None:
    with pytest.raises(ValidationError, match="nests too deeply"):
        load_rules(DEEP["arrays"])


def test_shallow_nesting_is_still_read_as_toml() -> None:
    _, problems = parse_rules("a = [[[1]]]\n", "rules.toml")
    assert [problem.field for problem in problems] == ["a"]  # unknown key, not unparseable
