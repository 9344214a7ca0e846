"""The server-side template injection battery: every payload refused, nothing leaked."""

from __future__ import annotations

import pytest
from jinja2 import TemplateError
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import SecurityError

from engine.render.diagnostics import RenderError
from engine.render.library import TemplateSource
from engine.render.links import Campaign
from engine.render.renderer import RenderContext, Renderer
from engine.render.sandbox import RapportSandbox, RenderBudget, budget, render_text
from engine.render.store import MemoryTemplateStore
from fatigue.errors import ValidationError

from .render_helpers import DictLibrary, template_files

SECRET_ENV = "RAPPORT_TEST_SECRET_VALUE_42"

ITEMS = [{"item_id": "1", "title": "Mug"}, {"item_id": "2", "title": "Tin"}]

PAYLOADS = {
    "str-mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "tuple-bases": "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "dict-class": "{{ recipient.__class__ }}",
    "function-globals": "{{ recipient.get.__globals__ }}",
    "self-globals": "{{ self.__init__.__globals__ }}",
    "self-context": "{{ self._TemplateReference__context }}",
    "getitem-dunder": "{{ recipient['__class__'] }}",
    "attr-filter": "{{ recipient|attr('__class__') }}",
    "format-filter": "{{ '%s'|format(recipient) }}",
    "str-format-walk": "{{ '{0.__class__.__mro__}'.format(recipient) }}",
    "str-format-width": "{{ '{:>999999999}'.format(1) }}",
    "percent-format": "{{ '%999999999d' % 1 }}",
    "cycler-global": "{{ cycler.__init__.__globals__.os.environ }}",
    "joiner-global": "{{ joiner.__init__.__globals__ }}",
    "lipsum-global": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "namespace-global": "{{ namespace.__init__.__globals__ }}",
    "config": "{{ config.items() }}",
    "request": "{{ request.application.__globals__ }}",
    "environ": "{{ environ }}",
    "include-file": "{% include '/etc/passwd' %}",
    "import-file": "{% import '/etc/passwd' as x %}",
    "list-mutation": "{{ items.append(1) }}",
    "dict-mutation": "{{ recipient.update({'user_id': 'x'}) }}",
    "huge-string": "{{ 'a' * 10**9 }}",
    "huge-list": "{{ [0] * 10**9 }}",
    "huge-ljust": "{{ 'a'.ljust(10**9) }}",
    "huge-center": "{{ 'a'|center(10**9) }}",
    "huge-range": "{{ range(10**9)|list }}",
    "huge-power": "{{ 10 ** 100000 }}",
    "nested-loops": (
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    ),
    "doubling-macro": (
        "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ d('a', 40) }}"
    ),
    "fan-out-macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "endless-recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "recursive-loop": "{% for x in items recursive %}{{ loop(x) }}{% endfor %}",
    "join-bomb": "{{ range(9999)|join('x' * 9999) }}",
    "replace-bomb": "{{ ('a' * 9999)|replace('', 'b' * 9999) }}",
    "batch-bomb": "{{ items|batch(10**9, 'x')|list }}",
    "sum-lists": "{{ [[1] * 9999] * 9999|sum(start=[]) }}",
    "safe-filter": "{{ recipient.first_name|safe }}",
    # Printed or joined as text: a list of references is cheap to hold, gigabytes to print.
    "printed-list": "{{ ['x' * 99999] * 99999 }}",
    "string-filter-list": "{{ (['x' * 99999] * 99999)|string|length }}",
    "joined-list": "{{ (['x' * 99999] * 99999) ~ 'y' }}",
    # Silent: no output and no loop, only calls or arithmetic, which the budget now counts.
    "silent-fan-out": (
        "{% macro f(n) %}{% if n %}{% set a = f(n - 1) %}{% set b = f(n - 1) %}{% endif %}"
        "{% endmacro %}{% set z = f(40) %}"
    ),
    "bigint-squaring": (
        "{% macro sq(a, n) %}{% if n %}{% set b = sq(a * a, n - 1) %}{% endif %}"
        "{% endmacro %}{% set z = sq(2 ** 2000, 30) %}"
    ),
}


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("RAPPORT_TEST_SECRET", SECRET_ENV)


def _renderer_for(payload: str, signer, links, clock) -> Renderer:
    files = template_files(f"<mj-text>{payload}</mj-text>")
    library = DictLibrary(TemplateSource("t", files))
    return Renderer(library, signer, links, clock=clock, limits=RenderBudget(seconds=0.3))


def test_the_same_template_without_a_payload_renders(signer, links, clock) -> None:
    renderer = _renderer_for(
        "{{ recipient.first_name }} {{ items[0].title }}", signer, links, clock
    )
    context = RenderContext({"user_id": "u1", "first_name": "<b>"}, ITEMS, Campaign("c1"))
    email = renderer.render("t", context)
    assert "&lt;b&gt; Mug" in email.html


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_payload_in_body_is_refused_with_a_clear_error(
    payload, secret_env, signer, links, clock
) -> None:
    renderer = _renderer_for(payload, signer, links, clock)
    context = RenderContext({"user_id": "u1", "first_name": "<b>"}, ITEMS, Campaign("c1"))
    with pytest.raises(ValidationError) as caught:
        renderer.render("t", context)
    message = str(caught.value)
    assert caught.value.problems and message
    for leak in (SECRET_ENV, "root:", "<class", "__globals__':", "uid="):
        assert leak not in message


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_payload_in_subject_is_refused(payload, secret_env, signer, links, clock) -> None:
    files = template_files("<mj-text>hi</mj-text>", subject=payload.replace('"', "'"))
    library = DictLibrary(TemplateSource("t", files))
    renderer = Renderer(library, signer, links, clock=clock, limits=RenderBudget(seconds=0.3))
    context = RenderContext({"user_id": "u1"}, ITEMS, Campaign("c1"))
    with pytest.raises(ValidationError) as caught:
        renderer.render("t", context)
    assert SECRET_ENV not in str(caught.value)


@pytest.mark.parametrize(
    "payload",
    [PAYLOADS[key] for key in ("str-mro-subclasses", "attr-filter", "huge-string", "include-file")],
)
def test_store_refuses_to_save_an_injection(payload) -> None:
    store = MemoryTemplateStore()
    with pytest.raises(ValidationError) as caught:
        store.save("t", template_files(f"<mj-text>{payload}</mj-text>"), "mallory", "try")
    assert all(problem.source for problem in caught.value.problems)
    assert store.names() == []


def test_render_error_names_the_file_and_line(signer, links, clock) -> None:
    renderer = _renderer_for(PAYLOADS["str-mro-subclasses"], signer, links, clock)
    with pytest.raises(RenderError) as caught:
        renderer.render("t", RenderContext({"user_id": "u1"}, [], Campaign("c1")))
    problem = caught.value.problems[0]
    assert problem.source and problem.source.startswith("t/email.mjml")
    assert problem.line is not None
    assert "not allowed" in problem.message


def test_the_sandbox_still_renders_ordinary_templates() -> None:
    env = RapportSandbox(html=True)
    source = (
        "{% for row in items|batch(2) %}[{% for i in row %}{{ i.title|upper }} "
        "{{ i.price|money('GBP') }}{% endfor %}]{% endfor %} {{ 'a' ~ name|lower }}"
        " {{ items|map(attribute='title')|join(', ') }} {{ (items|length) * 2 }}"
    )
    items = [{"title": "Mug & Cup", "price": 2.5}, {"title": "Tin", "price": 10}]
    with budget():
        out = render_text(env.from_string(source), {"items": items, "name": "<X>"})
    assert out == ("[MUG &amp; CUP &#163;2.50TIN &#163;10.00] a&lt;x&gt; Mug &amp; Cup, Tin 4")


def test_strict_undefined_refuses_missing_values() -> None:
    env = RapportSandbox(html=True)
    with budget(), pytest.raises(TemplateError, match="first_name"):
        render_text(env.from_string("{{ recipient.first_name }}"), {"recipient": {}})


def test_rendering_outside_a_budget_is_refused() -> None:
    env = RapportSandbox(html=False)
    with pytest.raises(SecurityError, match="budget"):
        render_text(env.from_string("{% for i in range(3) %}{{ i }}{% endfor %}"), {})


def test_budget_counts_output_across_renders() -> None:
    env = RapportSandbox(html=False)
    template = env.from_string("{{ 'x' * 90000 }}")
    with budget(RenderBudget(max_output=200_000)), pytest.raises(SecurityError, match="output"):
        for _ in range(3):
            render_text(template, {})


def test_money_formats_each_value_as_itself_even_when_cached() -> None:
    from engine.render.filters import money

    assert [money(1, "GBP"), money(1.0, "GBP"), money(True, "GBP")] == ["£1.00", "£1.00", "True"]
    assert money(1234.5, "EUR") == "€1,234.50" and money(1234.5, "XYZ") == "1,234.50 XYZ"
    assert money(["not", "hashable"], "GBP") == "['not', 'hashable']"


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (1500, "JPY", "¥1,500"),  # no minor unit
        (1.275, "KWD", "1.275 KWD"),  # three places
        (1.005, "GBP", "£1.01"),  # half up, not to even
        (None, "GBP", ""),  # no price
        (2.95, None, "2.95"),  # no currency
    ],
)
def test_money_follows_each_currencys_places_and_shows_nothing_for_no_price(
    value, currency, shown
) -> None:
    from engine.render.filters import money

    assert money(value, currency) == shown


def test_an_empty_field_prints_as_nothing_not_none() -> None:
    """A catalog item without a price shows a blank, in the HTML and in the text part."""
    for html in (True, False):
        template = RapportSandbox(html=html).from_string("[{{ item.price }}][{{ 0 }}]")
        with budget():
            assert render_text(template, {"item": {"price": None}}) == "[][0]"


class _JinjasOwnOutput(RapportSandbox):
    """The sandbox with Jinja's stock code generator: the reference for the fused output."""

    code_generator_class = CodeGenerator


class _SafeHTML:
    def __html__(self) -> str:
        return "<b>already safe</b>"


OUTPUTS = """{{ text }}|{{ number }}|{{ ratio }}|{{ nothing }}|{{ safe }}|{{ text|e }}
{{ items|length }}|{% macro card(x) %}<i>{{ x }}</i>{% endmacro %}{{ card(text) }}
{% set block %}{{ text }}{{ number }}{% endset %}{{ block }}|{{ block|length }}
{% for item in items %}{{ loop.index }}={{ item.title }}{% if not loop.last %},{% endif %}
{% endfor %}{% autoescape false %}{{ text }}{% endautoescape %}
{% autoescape true %}{{ text }}{% endautoescape %}
{{ text ~ number }}|{{ (text ~ '')|upper }}|{{ {'a': text}['a'] }}"""


@pytest.mark.parametrize("html", [True, False], ids=["html", "text"])
def test_fused_output_writes_exactly_what_jinjas_own_code_writes(html: bool) -> None:
    """Each ``{{ }}`` goes through one call instead of Jinja's three; the text must not change."""
    values = {"text": "<a href='x'>Tom & \"Jerry\"</a>", "number": 42, "ratio": 0.5,
              "nothing": None, "safe": _SafeHTML(), "items": ITEMS}  # fmt: skip
    fused = RapportSandbox(html=html).from_string(OUTPUTS)
    stock = _JinjasOwnOutput(html=html).from_string(OUTPUTS)
    with budget():
        expected = render_text(stock, values)
        assert render_text(fused, values) == expected
    assert expected.startswith("&lt;a href=&#39;x&#39;&gt;") is html


def test_fused_output_still_counts_every_output_against_the_budget() -> None:
    looped = "{% for i in range(50) %}{{ text }}{% endfor %}"
    template = RapportSandbox(html=True).from_string(looped)
    with budget(RenderBudget(max_output=4_000)), pytest.raises(SecurityError, match="output"):
        render_text(template, {"text": "x" * 100})


def test_html_output_writes_non_ascii_as_character_references_and_text_output_does_not() -> None:
    from markupsafe import Markup

    values = {"name": "Zoë <b>", "price": 2.5, "safe": Markup("<i>déjà</i>"), "arrow": "→"}
    source = "{{ name }} {{ price|money('EUR') }} {{ safe }} {{ arrow }}"
    with budget():
        html = render_text(RapportSandbox(html=True).from_string(source), values)
        text = render_text(RapportSandbox(html=False).from_string(source), values)
    # Markup renders itself as given, and what is written into the email comes out ASCII.
    assert html == "Zo&#235; &lt;b&gt; &#8364;2.50 <i>d&#233;j&#224;</i> &#8594;"
    assert text == "Zoë <b> €2.50 <i>déjà</i> →"


def test_the_limits_own_wrappers_are_called_directly_and_templates_cannot_reach_them() -> None:
    env = RapportSandbox(html=True)
    source = "{% for i in items %}{{ i.title ~ '!' }}{% endfor %}"
    code = env.compile(source, raw=True)
    assert "environment.rapport_loop(" in code and "environment.rapport_concat(" in code
    assert "environment.call(context, environment." not in code  # no sandbox check for them
    with budget():
        assert render_text(env.from_string(source), {"items": ITEMS}) == "Mug!Tin!"
    for name in ("rapport_loop", "environment.rapport_loop"):
        with pytest.raises(TemplateError), budget():  # a name a template cannot see
            render_text(env.from_string(f"{{{{ {name}([1], 0) }}}}"), {})


def test_text_a_filter_may_still_change_keeps_its_characters_until_it_is_written() -> None:
    source = (
        "{% filter upper %}Café {{ name }}{% endfilter %}|{% set t %}Hi {{ name }}{% endset %}"
        "{{ t|length }}|{{ t|truncate(5, true, '', 0) }}|{% macro m(x) %}{{ x }}!{% endmacro %}"
        "{{ m(name)[:3] }}|{{ name }}|{{ control }}"
    )
    with budget():
        html = render_text(RapportSandbox(html=True).from_string(source),
                           {"name": "Zoé", "control": "a\x80b é"})  # fmt: skip
    # upper, length, truncate and slices work on the characters; what is written is ASCII,
    # but for a C1 control (HTML reads &#128; as a euro sign): that value stays as it is.
    assert html == "CAFÉ ZOÉ|6|Hi Zo|Zo&#233;|Zo&#233;|a\x80b é"


def test_each_email_renders_against_a_fresh_budget(signer, links, clock) -> None:
    renderer = _renderer_for("{{ recipient.note }}", signer, links, clock)
    note = "x" * 60_000  # written into the HTML and the text part: 120,000 an email
    renderer.limits = RenderBudget(max_output=150_000)
    context = RenderContext({"user_id": "u1", "note": note}, ITEMS, Campaign("c1"))
    for _ in range(3):  # one shared budget would refuse the second email
        assert note in renderer.render("t", context).html
    assert renderer.limits.output == 0  # the configured limits are never spent themselves


def test_a_budget_is_withdrawn_when_its_block_ends_even_by_an_error() -> None:
    template = RapportSandbox(html=False).from_string("{{ x }}")
    with budget(RenderBudget(max_output=5)) as outer:
        with pytest.raises(SecurityError), budget(RenderBudget(max_output=1)):
            render_text(template, {"x": "abc"})
        assert render_text(template, {"x": "abc"}) == "abc"  # the outer budget again
        assert outer.output == 3
    with pytest.raises(SecurityError, match="budget"):
        render_text(template, {"x": "abc"})


def test_a_render_sees_its_variables_and_globals_and_writes_into_neither() -> None:
    env = RapportSandbox(html=False)
    variables = {"n": 2}
    source = "{% set n = n + 1 %}{% set m = 5 %}{{ n }}{{ range(2)|list }}"
    with budget():
        assert render_text(env.from_string(source), variables) == "3[0, 1]"
        assert render_text(env.from_string("{{ m is defined }}"), variables) == "False"
        # A variable of the same name hides a global, as in Jinja's own render.
        assert render_text(env.from_string("{{ range }}"), {"range": "r"}) == "r"
    assert variables == {"n": 2} and env.globals.keys() == {"range"}


def test_a_failed_render_still_points_at_the_templates_line() -> None:
    from engine.render.diagnostics import problem_from
    from engine.render.prepared import TEXT_ENV, compile_jinja

    template = compile_jinja(TEXT_ENV, "one\ntwo\n{{ missing.value }}", "t/email.txt")
    with budget(), pytest.raises(TemplateError) as caught:
        render_text(template, {})
    # Jinja's handler rewrote the traceback onto the template's lines.
    assert problem_from(caught.value, "t/email.txt").line == 3


def test_non_ascii_outputs_are_written_alike_every_time_and_long_ones_are_not_kept() -> None:
    from engine.render.sandbox import MEMO_TEXT, _references_for

    template = RapportSandbox(html=True).from_string("{{ a }}|{{ b }}|{{ n }}")
    with budget():
        for name in ("Léa", "Zoë", "Léa", "José"):
            html = render_text(template, {"a": "£2.08", "b": name, "n": 1})
            assert html == "&#163;2.08|" + name.encode("ascii", "xmlcharrefreplace").decode() + "|1"
        kept = _references_for.cache_info().currsize
        long_text = "é" * (MEMO_TEXT + 1)
        assert render_text(template, {"a": long_text, "b": "x", "n": 2}).startswith("&#233;" * 9)
    assert _references_for.cache_info().currsize == kept  # not remembered: it could be huge


class _StockLookups(RapportSandbox):
    """Jinja's own code and the immutable sandbox's own ``getattr``: the reference for lookups."""

    code_generator_class = CodeGenerator

    def getattr(self, obj: object, attribute: str) -> object:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        return ImmutableSandboxedEnvironment.getattr(self, obj, attribute)


class _Fields(dict):  # a dict subclass may carry attributes: never read as a plain dict
    title = "attribute"


LOOKED_UP = ["title", "nothing", "missing", "items", "keys", "get", "copy", "fromkeys",
             "__class__", "__init__", "_private", "mro", "upper", "format"]  # fmt: skip


def _rendered(template_source: str, env: RapportSandbox, values: dict) -> str:
    try:
        with budget():
            return render_text(env.from_string(template_source), values)
    except Exception as exc:  # the failure itself is compared: its kind and its message
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("html", [True, False], ids=["html", "text"])
@pytest.mark.parametrize("name", LOOKED_UP)
def test_a_dicts_keys_read_inline_are_what_the_sandboxs_getattr_returns(name, html) -> None:
    """``item.name`` reads a plain dict's key in the written code; every other case, and every
    result, is the sandbox's own: dict methods, private and special names, subclasses, misses.
    """
    from types import MappingProxyType, SimpleNamespace

    plain = {key: f"key {key}" for key in LOOKED_UP if key != "missing"}
    plain["nothing"] = None
    values = {"plain": plain, "sub": _Fields(plain), "proxy": MappingProxyType(plain),
              "obj": SimpleNamespace(title="t"), "text": "abc"}  # fmt: skip
    fast, stock = RapportSandbox(html=html), _StockLookups(html=html)
    for owner in ("plain", "sub", "proxy", "obj", "text", "undefined_name", "plain.title"):
        for expression in (f"{owner}.{name}", f"{owner}.{name}|default('d')",
                           f"({owner}.{name}).title", f"{owner}.{name} is defined"):  # fmt: skip
            source = f"[{{{{ {expression} }}}}]"
            assert _rendered(source, fast, values) == _rendered(source, stock, values), source


def test_only_a_name_that_is_not_a_dicts_own_is_read_inline() -> None:
    code = RapportSandbox(html=True).compile("{{ item.title }}{{ item.items }}", raw=True)
    assert "['title'] if type(" in code  # the written lookup, no call for a dict's key
    assert "else l_0_item), 'items')" in code  # a dict's own name: the sandbox's getattr


NESTED_LOOKUPS = """{% for i in items if i.title %}{{ i.title }}{% else %}{{ i.x }}{% endfor %}
{% macro m(x=items[0].title) %}{{ x }}{% endmacro %}{% macro c() %}[{{ caller() }}]{% endmacro %}
{{ m() }}{% call c() %}{{ items[1].title }}{{ items[0].item_id }}{% endcall %}
{% set t = {'a': items[0]} %}{{ t.a.title }}{{ (items|first).title }}{{ m(x=t.a.title) }}"""


@pytest.mark.parametrize("html", [True, False], ids=["html", "text"])
def test_lookups_inside_loops_macros_and_calls_write_what_jinjas_own_code_writes(html) -> None:
    values = {"items": ITEMS}
    fast, stock = RapportSandbox(html=html), _StockLookups(html=html)
    assert _rendered(NESTED_LOOKUPS, fast, values) == _rendered(NESTED_LOOKUPS, stock, values)
    assert "Mug" in _rendered(NESTED_LOOKUPS, fast, values)


@pytest.mark.parametrize("html", [True, False], ids=["html", "text"])
@pytest.mark.parametrize("source", ["{{ a }}", "{% block b %}{{ a }}{% endblock %}"])
def test_a_parts_context_is_the_context_jinja_makes(html: bool, source: str) -> None:
    from jinja2.runtime import Context

    from engine.render.prepared import compile_jinja

    template = compile_jinja(RapportSandbox(html=html), source, "t.html")
    scope = {**template.globals, "a": "x"}
    made = template.environment.context_class(
        template.environment, scope, template.name, template.blocks, template.globals
    )
    stock = Context(template.environment, scope, template.name, template.blocks, template.globals)
    assert type(made) is not Context and isinstance(made, Context)  # the lean one, a Context
    made_fields, stock_fields = vars(made), vars(stock)
    assert vars(made_fields.pop("eval_ctx")) == vars(stock_fields.pop("eval_ctx"))
    assert made_fields == stock_fields
    with budget():
        assert render_text(template, {"a": "<x>"}) == ("&lt;x&gt;" if html else "<x>")


def test_a_part_finished_past_the_time_budget_is_refused() -> None:
    template = RapportSandbox(html=True).from_string("no outputs, no loops")
    with budget(RenderBudget(seconds=-1.0)), pytest.raises(SecurityError, match="time budget"):
        render_text(template, {})


def test_a_fresh_budget_keeps_every_limit_and_nothing_spent() -> None:
    """``fresh`` names the limits itself (a copy per email, no ``replace``): a limit added to
    ``RenderBudget`` and left out there would silently fall back to its default."""
    import dataclasses

    spent = RenderBudget(seconds=0.5, max_output=7, max_iterations=3, output=5, iterations=2,
                         deadline=9.0, ticks=4)  # fmt: skip
    counters = {"output": 0, "iterations": 0, "deadline": 0.0, "ticks": 0}
    assert spent.fresh() == dataclasses.replace(spent, **counters)
    assert {f.name for f in dataclasses.fields(RenderBudget)} - counters.keys() == {
        "seconds",
        "max_output",
        "max_iterations",
    }
