"""Filter chains inside one ``{{ }}`` are held to the size and time limits like everything else.

Each filter's result is checked as it is made: a chain of growing filters (``urlencode``
triples a ``%``, ``forceescape`` makes ``&`` five characters) otherwise built strings far past
``MAX_STRING`` and ran for minutes, since nothing else in one expression outputs or loops.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.render.prepared import compile_jinja
from engine.render.sandbox import (
    MAX_STRING,
    RapportSandbox,
    RenderBudget,
    TemplateLimitError,
    budget,
    render_text,
)

LIMIT = f"limit {MAX_STRING:,}"

# Each stays under MAX_STRING until its first filter, then grows past it: unchecked, it
# rendered the length of a string several times the limit.
GROWING_CHAINS = {
    "urlencode": "{% set s = '%' * 40000 %}{{ (s|urlencode|urlencode)|length }}",
    "urlencode-near-limit": "{% set s = '%' * 99999 %}{{ (s" + "|urlencode" * 3 + ")|length }}",
    "forceescape": "{% set s = '&' * 30000 %}{{ (s|forceescape|forceescape)|length }}",
    "escape": "{% set s = '<' * 30000 %}{{ (s|e)|length }}",
}


@pytest.mark.parametrize("source", GROWING_CHAINS.values(), ids=GROWING_CHAINS.keys())
@pytest.mark.parametrize("html", [True, False], ids=["html", "text"])
def test_a_filter_chain_cannot_build_a_string_past_the_limit(source: str, html: bool) -> None:
    template = RapportSandbox(html=html).from_string(source)
    with budget(), pytest.raises(TemplateLimitError, match=LIMIT):
        render_text(template, {})


def test_a_filter_result_from_the_data_is_checked_too() -> None:
    template = RapportSandbox(html=True).from_string("{{ (name|urlencode)|length }}")
    with budget(), pytest.raises(TemplateLimitError, match=LIMIT):
        render_text(template, {"name": "%" * 40_000})


def test_each_filter_call_checks_the_time_budget() -> None:
    # The budget is spent before the render starts; only the filter call can notice, since
    # the expression prints once (the output count reads the clock every 32 outputs).
    template = RapportSandbox(html=False).from_string("{{ name|upper }}")
    with budget(RenderBudget(seconds=-1.0)), pytest.raises(TemplateLimitError, match="time"):
        template.render({"name": "ada"})


def test_a_long_chain_of_small_filters_is_stopped_by_the_time_budget() -> None:
    chain = "{% set s = 'a' * 90000 %}{{ (s" + "|upper|lower" * 25 + ")|length }}"
    template = RapportSandbox(html=False).from_string(chain)
    with budget(RenderBudget(seconds=-1.0)), pytest.raises(TemplateLimitError, match="time"):
        template.render({})


def test_ordinary_filters_still_render() -> None:
    source = "{{ name|upper }} {{ price|money('GBP') }} {{ items|map('upper')|join(', ') }}"
    template = RapportSandbox(html=True).from_string(source)
    with budget():
        output = render_text(template, {"name": "a&b", "price": 2.5, "items": ["x", "y"]})
    assert output == "A&amp;B &#163;2.50 X, Y"


def test_constant_filters_are_still_folded_at_compile_time_outside_a_budget() -> None:
    # Jinja runs a filter on constants while compiling, with no render budget in force.
    env = RapportSandbox(html=False)
    template = compile_jinja(env, "{{ 'mug'|upper ~ ('a b'|urlencode) }}", "subject")
    with budget():
        assert render_text(template, {}) == "MUGa%20b"


def test_an_oversized_constant_chain_compiles_and_is_refused_when_rendered() -> None:
    # Folding it fails on the size check, so Jinja leaves it to the render, which refuses it.
    source = "{{ ('" + "%" * 40_000 + "'|urlencode|urlencode)|length }}"
    template = compile_jinja(RapportSandbox(html=False), source, "subject")
    with budget(), pytest.raises(TemplateLimitError, match=LIMIT):
        render_text(template, {})


def test_slice_filter_works() -> None:
    """``slice`` takes the environment first; its size-checked wrapper must say so to Jinja."""
    template = RapportSandbox(html=True).from_string("{{ items|slice(2)|list|length }}")
    with budget():
        assert render_text(template, {"items": [1, 2, 3]}) == "2"


@pytest.mark.parametrize(
    ("source", "size"),
    [("{{ (s|lower)|length }}", "text"), ("{{ (s|list)|length }}", "list"),
     ("{{ (rows|last)|length }}", "tuple")],
)  # fmt: skip
def test_a_filter_result_up_to_the_limit_passes_and_one_longer_is_refused(
    source: str, size: str
) -> None:
    template = RapportSandbox(html=False).from_string(source)
    for length, refused in ((MAX_STRING, False), (MAX_STRING + 1, True)):
        values = {"s": "a" * length, "rows": [tuple(range(length))]}
        with budget():
            if refused:
                with pytest.raises(TemplateLimitError, match=LIMIT):
                    render_text(template, values)
            else:
                assert render_text(template, values) == str(length), size


CHARGED = "{% for item in items %}ab{{ item.title }}{% endfor %}{{ name }}{{ 7 }}"


@pytest.mark.parametrize(("html", "counts"), [(True, (17, 2, 6)), (False, (19, 2, 6))])
def test_outputs_and_loops_charge_the_budget_what_the_methods_charged(html, counts) -> None:
    """Text outputs and loop iterations are charged inline: output, iterations and ticks are
    what the budget's methods counted when every charge called them.
    """
    from engine.render.sandbox import RenderBudget, budget, render_text

    items = [{"title": "Mug"}, {"title": "Teapot"}]
    with budget(RenderBudget()) as spend:
        render_text(RapportSandbox(html=html).from_string(CHARGED), {"items": items, "name": "Ann"})
    assert (spend.output, spend.iterations, spend.ticks) == counts


@pytest.mark.parametrize("charge", ["html", "text", "loop"])
def test_each_inline_charge_refuses_at_the_limits_and_reads_the_clock_every_32nd(charge) -> None:
    from engine.render.sandbox import (
        RenderBudget,
        TemplateLimitError,
        _bounded_loop,
        _output_html,
        _output_text,
        budget,
    )

    def charging() -> Callable[[], object]:
        loop = _bounded_loop(iter(range(10**6)), 10)
        return {"html": lambda: _output_html("x" * 10), "text": lambda: _output_text("x" * 10),
                "loop": lambda: next(loop)}[charge]  # fmt: skip

    with budget(RenderBudget(max_output=100)):  # ten charges of ten: at the limit
        charge_once = charging()
        for _ in range(10):
            charge_once()
        with pytest.raises(TemplateLimitError, match="output exceeds"):
            charge_once()
    with budget(RenderBudget(seconds=-1.0)):  # late from the start
        charge_once = charging()
        for _ in range(31):  # the clock is not read before the 32nd charge
            charge_once()
        with pytest.raises(TemplateLimitError, match="time budget"):
            charge_once()
    if charge == "loop":
        with budget(RenderBudget(max_iterations=5)):
            loop = _bounded_loop(iter(range(10)), 0)
            assert [next(loop) for _ in range(5)] == [0, 1, 2, 3, 4]
            with pytest.raises(TemplateLimitError, match="loops exceed"):
                next(loop)
