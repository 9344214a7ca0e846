"""The Jinja sandbox every marketer's template runs in, with limits on runaway templates.

``ImmutableSandboxedEnvironment`` already refuses private attributes, Python internals and
mutation. It does not stop a template from exhausting the machine: ``'a' * 10**9``, a macro
doubling a string forty times, nested loops over huge ranges. This module adds the missing
limits, enforced per render through a :class:`RenderBudget` held in a context variable (so
concurrent renders in threads never share one):

- arithmetic and concatenation refuse results past :data:`MAX_STRING` characters or items;
- every ``{% for %}`` is rewritten at parse time to pass through a counter that charges the
  loop body's literal text per iteration and checks the time budget;
- every ``{{ expression }}`` output is counted (``finalize``), so captured output inside
  macros and ``{% set %}`` blocks is bounded too;
- every filter's result is size-checked and every filter call checks the time budget, so a
  chain of growing filters inside one ``{{ }}`` cannot build a huge string on its own;
- globals and filters are an allow-list: no ``cycler``, ``joiner``, ``lipsum``, ``namespace``,
  ``attr``, ``format``, ``safe`` or size-taking filters such as ``center``.

A template nesting more than :data:`MAX_NESTING` deep (or too deeply for Jinja's recursive
parser or Python's compiler) is refused as a :class:`~jinja2.TemplateSyntaxError`, not left to
compile for seconds or raise ``RecursionError``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from functools import lru_cache
from types import CodeType
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# What markupsafe's escape calls, without the Markup wrapper around its result (markupsafe
# picks its C extension or its pure-Python fallback itself).
from markupsafe import _escape_inner

from engine.render import filters

MAX_STRING = 100_000
MAX_RANGE = 10_000
MAX_LOOP_ITERATIONS = 20_000
MAX_OUTPUT = 2_000_000
MEMO_TEXT = 256  # characters of an output kept in a memo, at most
DEFAULT_TIME_BUDGET = 0.5
TOO_DEEP = (
    "the template nests too deeply to read (brackets, filters or tags inside one another); "
    "nest them less"
)
# Nodes inside one another (the bundled templates reach 7). Jinja's code generator re-runs its
# optimizer over each nested expression, so compiling costs roughly the cube of the depth: a
# chain of 250 filters took 14 s; past the recursion limit it raised RecursionError.
MAX_NESTING = 64

# Read-only, size-preserving string methods; everything else on str (format, center, ljust,
# zfill, expandtabs, join, replace...) is refused because its size comes from an argument.
SAFE_STR_METHODS = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "isalnum", "isalpha",
        "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "lower", "lstrip",
        "rstrip", "split", "splitlines", "startswith", "strip", "title", "upper",
    }
)  # fmt: skip


class TemplateLimitError(SecurityError):
    """A template went past one of the render limits (size, loop count, time)."""


@dataclass
class RenderBudget:
    """What one render may still spend: output characters, loop iterations and time."""

    seconds: float = DEFAULT_TIME_BUDGET
    max_output: int = MAX_OUTPUT
    max_iterations: int = MAX_LOOP_ITERATIONS
    output: int = 0
    iterations: int = 0
    deadline: float = field(default=0.0)
    ticks: int = 0

    def start(self) -> None:
        """Start the clock for this render."""
        self.deadline = time.perf_counter() + self.seconds

    def fresh(self) -> RenderBudget:
        """Return a budget with these limits and nothing spent yet (one for each email)."""
        return RenderBudget(self.seconds, self.max_output, self.max_iterations)

    def charge_output(self, size: int) -> None:
        """Count ``size`` characters of output and refuse once the total is too large."""
        self.output += size
        self.ticks += 1
        if self.output > self.max_output or not self.ticks % 32:
            self.settle()

    def settle(self) -> None:
        """Refuse what was charged past a limit; on every 32nd charge, refuse a late render.

        The charges themselves are written inline where they are made most (each text output,
        each loop iteration), and call this only when there may be something to refuse: about
        sixty method calls an email fewer. Reading the clock on every charge would cost more
        than it saves.
        """
        if self.iterations > self.max_iterations:
            raise TemplateLimitError(f"loops exceed {self.max_iterations:,} iterations")
        if self.output > self.max_output:
            raise TemplateLimitError(f"output exceeds {self.max_output:,} characters")
        if not self.ticks % 32:
            self.check_time()

    def check_time(self) -> None:
        """Refuse once the render has run past its time budget."""
        if time.perf_counter() > self.deadline:
            raise TemplateLimitError(f"render exceeded its {self.seconds:g} s time budget")


_BUDGET: ContextVar[RenderBudget | None] = ContextVar("rapport_render_budget", default=None)


def budget(spend: RenderBudget | None = None) -> AbstractContextManager[RenderBudget]:
    """Run the enclosed renders against one budget (a fresh default one when not given)."""
    return _Spending(spend or RenderBudget())


class _Spending(AbstractContextManager[RenderBudget]):
    """The budget in force while the ``with`` block runs.

    A class, not a ``contextmanager`` generator: entered once an email, the generator's
    machinery cost about 2 us of it.
    """

    def __init__(self, spend: RenderBudget) -> None:
        self._spend = spend
        self._token: Token[RenderBudget | None] | None = None

    def __enter__(self) -> RenderBudget:
        self._spend.start()
        self._token = _BUDGET.set(self._spend)
        return self._spend

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _BUDGET.reset(self._token)


def _current() -> RenderBudget:
    spend = _BUDGET.get()
    if spend is None:
        raise TemplateLimitError("templates render only inside a render budget")
    return spend


# A tuple, not ``str | list | tuple``: that union was built anew, and isinstance walked it, on
# every filter call and arithmetic operation (about 2 us an email).
_SIZED = (str, list, tuple)


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


def _check_size(result_size: int, what: str) -> None:
    if result_size > MAX_STRING:
        raise TemplateLimitError(f"{what} would be {result_size:,} long (limit {MAX_STRING:,})")


def _huge_power(base: Any, exponent: Any) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)):
        return False
    return exponent > 0 and abs(base).bit_length() * exponent > 4096


def _huge_product(left: Any, right: Any) -> bool:
    if not (isinstance(left, int) and isinstance(right, int)):
        return False
    return abs(left).bit_length() + abs(right).bit_length() > 4096  # as ** allows


def _check_filter_result(result: Any) -> None:
    """Refuse a filter's result past :data:`MAX_STRING`, and a render past its time budget.

    A chain of filters in one ``{{ }}`` neither outputs nor loops until its end: unchecked,
    ``s|urlencode|urlencode...`` built strings thousands of times the limit, each filter slower
    than the last. Every filter call reads the clock, since one call on a string near the limit
    costs far more than reading it.
    """
    if isinstance(result, _SIZED) and len(result) > MAX_STRING:  # _sized, without its call
        _check_size(len(result), "a filter's result")
    spend = _BUDGET.get()
    # None while Jinja folds constant filters at compile time. The deadline is read here, not
    # through check_time (which raises): this runs for every filter call of every email.
    if spend is not None and time.perf_counter() > spend.deadline:
        spend.check_time()


def _bounded_loop(iterable: Iterable[Any], literal_size: int) -> Iterator[Any]:
    spend = _current()
    for value in iterable:  # one iteration and its literal text, charged as charge_output does
        spend.iterations += 1
        spend.output += literal_size
        spend.ticks += 1
        over = spend.iterations > spend.max_iterations or spend.output > spend.max_output
        if over or not spend.ticks % 32:
            spend.settle()
        yield value


def _bounded_concat(parts: list[Any]) -> str:
    # Sized before any part is turned into text: that text alone could exhaust the memory.
    _check_size(sum(filters.output_size(part, MAX_STRING) for part in parts), "a joined string")
    return markup_join(parts)


def _finalize(value: Any) -> Any:
    if value is None:  # a field the catalog leaves empty prints as nothing, not "None"
        return ""
    spend = _BUDGET.get()
    # Constant expressions are finalized once at compile time, outside any render.
    if spend is not None:
        size = len(value) if type(value) is str else filters.output_size(value, spend.max_output)
        spend.charge_output(size)
    return value


def _output_html(value: Any) -> str:
    """``escape(finalize(value))`` in one call: what every ``{{ }}`` of an HTML part costs.

    Jinja writes three calls per output (finalize, escape, and ``Markup``'s constructor in
    Python); an email has about fifty outputs. The escaped text is returned as plain ``str``:
    output is only ever joined, never used as a value. Written straight into the email, its
    non-ASCII characters come out as character references (``char_references``), markup that
    renders itself included: whatever a filter or macro made of it is done by then.
    """
    if type(value) is str:  # most outputs: finalize and escape inline, two calls fewer each
        spend = _BUDGET.get()
        if spend is not None:  # spend.charge_output(len(value)), written inline
            spend.output += len(value)
            spend.ticks += 1
            if spend.output > spend.max_output or not spend.ticks % 32:
                spend.settle()
        escaped = _escape_inner(value)
    else:
        escaped = _output_html_in_block(value)
    if escaped.isascii():
        return escaped
    return _references_for(escaped) if len(escaped) <= MEMO_TEXT else char_references(escaped)


def _output_html_in_block(value: Any) -> str:
    """Escape an output inside a filter block, a ``{% set %}`` block or a macro, characters kept.

    A filter may still change that text (``upper``, ``truncate``, a slice): on a character
    reference it would work on the reference's letters. The block's result is written out as
    it comes, characters and all.
    """
    value = _finalize(value)
    if type(value) is str:
        return _escape_inner(value)
    if hasattr(value, "__html__"):  # Markup, or an object that renders itself safely
        return str(value.__html__())
    return _escape_inner(str(value))


def char_references(text: str) -> str:
    """Write each non-ASCII character of HTML text as a numeric character reference.

    ``£`` becomes ``&#163;``: the same text to every mail client, whatever charset it assumes.
    An email's HTML that is all ASCII is also copied, not re-encoded, each time it is turned
    into UTF-8 (an answer line, a MIME part): one pound sign made that cost 15 us an email.
    Text with a C1 control character (U+0080 to U+009F) is left as it is: HTML reads those
    references as Windows-1252 (``&#128;`` shows a euro sign).
    """
    if _C1_CONTROL.search(text):
        return text
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


_C1_CONTROL = re.compile("[\x80-\x9f]")
# The same few non-ASCII outputs come back in email after email (a price's currency symbol, a
# catalog title): each is converted once, about 1.5 us an email. Keyed by the text alone, so
# every email gets the same answer for the same text; only short texts are kept, so the memo
# stays small whatever recipients' data holds.
_references_for = lru_cache(maxsize=2048)(char_references)


def _output_text(value: Any) -> str:
    """``str(finalize(value))`` in one call, for the text parts, subject and preheader."""
    if type(value) is str:  # as in _output_html
        spend = _BUDGET.get()
        if spend is not None:
            spend.output += len(value)
            spend.ticks += 1
            if spend.output > spend.max_output or not spend.ticks % 32:
                spend.settle()
        return value
    value = _finalize(value)
    return value if type(value) is str else str(value)


class _OutputCodeGenerator(CodeGenerator):
    """Jinja's code generator, writing each output through one fused call (see above).

    Only the plain case is fused: where autoescape can change during the render (``{%
    autoescape %}`` blocks) Jinja's own code is written, which reaches the same finalize.
    """

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if not _fused(frame, finalize):
            super()._output_child_pre(node, frame, finalize)
        elif frame.eval_ctx.autoescape and frame.buffer is None:  # yielded into the email
            self.write("environment.rapport_output_html(")
        elif frame.eval_ctx.autoescape:  # into a block's buffer, which a filter may change
            self.write("environment.rapport_output_html_in_block(")
        else:
            self.write("environment.rapport_output_text(")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if not _fused(frame, finalize):
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(")")

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        """Read ``item.name`` from a plain dict holding that key inline, else as the sandbox does.

        Templates read an email's item and recipient fields, dict keys, about fifty times an
        email, each a Python call of the sandbox's ``getattr``. What it returns for a plain
        dict and a name that is not one of ``dict``'s own is the key's value: the written code
        tests exactly that and reads the key itself. A missing key, a dict's own attribute
        (``items``, ``keys``), a subclass or any other object still goes through ``getattr``.
        """
        if node.attr in _DICT_ATTRIBUTES or self.environment.is_async:
            super().visit_Getattr(node, frame)
            return
        held, key = self.temporary_identifier(), repr(node.attr)
        self.write(f"({held}[{key}] if type({held} := ")
        self.visit(node.node, frame)
        self.write(f") is dict and {key} in {held} else environment.getattr({held}, {key}))")

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        """Call the render limits' own loop and join wrappers directly.

        ``_bound`` put them there; the sandbox's ``call`` would check each one as it checks a
        template's calls, about 2 us for every loop a template starts. A template's source
        cannot name an environment attribute, so only ``_bound`` writes these.
        """
        target = node.node
        if not (isinstance(target, nodes.EnvironmentAttribute) and target.name in _BOUNDS):
            super().visit_Call(node, frame, forward_caller=forward_caller)
            return
        self.write(f"environment.{target.name}(")
        for number, argument in enumerate(node.args):
            self.write(", " if number else "")
            self.visit(argument, frame)
        self.write(")")


_BOUNDS = frozenset({"rapport_loop", "rapport_concat"})


def _fused(frame: Frame, finalize: Any) -> bool:
    """Whether an output is written as one fused call: autoescape fixed, our own finalize."""
    return not frame.eval_ctx.volatile and finalize.src == "environment.finalize("


_DICT_ATTRIBUTES = frozenset(dir(dict))


def safe_range(*args: int) -> range:
    """Like ``range`` but refusing more than :data:`MAX_RANGE` numbers."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimitError(f"range of {len(numbers):,} numbers (limit {MAX_RANGE:,})")
    return numbers


class _PartContext(Context):
    """Jinja's ``Context``, the same fields made without its constructor's detours.

    Four are made an email (one a part), with their evaluation contexts: the stock
    constructors build the blocks through a comprehension even when there are none, and ask
    whether autoescape is a function of the template's name, which in this sandbox it never
    is (about 2 us an email). A test holds the fields equal to the stock ``Context``'s.
    """

    def __init__(
        self,
        environment: Any,
        parent: dict[str, Any],
        name: str | None,
        blocks: dict[str, Any],
        globals: Any = None,
    ) -> None:
        self.parent = parent
        self.vars = {}
        self.environment = environment
        if callable(environment.autoescape):  # chosen per template name: Jinja's own
            self.eval_ctx = EvalContext(environment, name)
        else:
            evaluation = self.eval_ctx = EvalContext.__new__(EvalContext)
            evaluation.environment = environment
            evaluation.autoescape = environment.autoescape
            evaluation.volatile = False
        self.exported_vars = set()
        self.name = name
        self.globals_keys = set() if globals is None else set(globals)
        self.blocks = {k: [v] for k, v in blocks.items()} if blocks else {}


class RapportSandbox(ImmutableSandboxedEnvironment):
    """The sandboxed environment with Rapport's allow-lists and runaway limits."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _OutputCodeGenerator
    context_class = _PartContext

    def __init__(self, *, html: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=StrictUndefined,
            finalize=_finalize,
            auto_reload=False,
            cache_size=0,
            keep_trailing_newline=True,
        )
        self.globals.clear()
        self.globals["range"] = safe_range
        self.filters = filters.allowed_filters(
            self.filters, max_size=MAX_STRING, check_result=_check_filter_result
        )
        self.rapport_loop = _bounded_loop
        self.rapport_output_html = _output_html
        self.rapport_output_html_in_block = _output_html_in_block
        self.rapport_output_text = _output_text
        self.rapport_concat = _bounded_concat

    def get_template(self, *args: Any, **kwargs: Any) -> Template:
        """Refuse ``include``, ``import`` and ``extends``: a template reads nothing else."""
        raise SecurityError("templates cannot include, import or extend other templates")

    def select_template(self, *args: Any, **kwargs: Any) -> Template:
        """Refuse, like :meth:`get_template`."""
        raise SecurityError("templates cannot include, import or extend other templates")

    def get_or_select_template(self, *args: Any, **kwargs: Any) -> Template:
        """Refuse, like :meth:`get_template`."""
        raise SecurityError("templates cannot include, import or extend other templates")

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Look ``obj.attribute`` up as Jinja does, reaching a plain dict's keys directly.

        A plain dict has no instance attributes, so for a name that is not one of ``dict``'s
        own the stock lookup always fails ``getattr`` and falls back to the key; templates do
        that for every ``item.name``, and the raised ``AttributeError`` is most of its cost.
        """
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Refuse what the immutable sandbox refuses, plus size-taking string methods."""
        if isinstance(obj, str) and attr not in SAFE_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """Never hand out ``str.format``: its width specs build strings of any size."""
        return None

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Call as the sandbox does, counting the call against the render's time budget.

        A macro that calls itself twice and prints nothing neither outputs nor loops: without
        this it ran for hours past the budget (and froze a save, which renders the sample).
        """
        spend = _BUDGET.get()
        if spend is not None:
            spend.charge_output(0)  # reads the clock every 32 calls
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Apply an arithmetic operator only if its result stays small."""
        spend = _BUDGET.get()
        if spend is not None:
            spend.charge_output(0)
        if operator == "%" and isinstance(left, str):
            raise TemplateLimitError("string formatting with % is not allowed; use ~ to join")
        if operator == "*" and isinstance(right, int) and _sized(left):
            _check_size(_sized(left) * right, "a repeated value")
        elif operator == "*" and isinstance(left, int) and _sized(right):
            _check_size(_sized(right) * left, "a repeated value")
        elif operator == "+" and _sized(left) and _sized(right):
            _check_size(_sized(left) + _sized(right), "a joined value")
        elif operator == "**" and _huge_power(left, right):
            raise TemplateLimitError("a power that large is not allowed")
        elif operator == "*" and _huge_product(left, right):
            raise TemplateLimitError("a product that large is not allowed")
        return self.binop_table[operator](left, right)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        parser = Parser(self, source, name, filename)  # as Jinja's own, kept to read its line
        try:
            tree = parser.parse()
        except RecursionError:
            line = parser.stream.current.lineno
            raise TemplateSyntaxError(TOO_DEEP, line, name, filename) from None
        deep = _nested_too_deeply(tree)
        if deep is not None:
            raise TemplateSyntaxError(TOO_DEEP, deep.lineno, name, filename)
        self._bound(tree, name, filename)
        return tree

    def _compile(self, source: str, filename: str) -> CodeType:
        try:
            return super()._compile(source, filename)
        except (RecursionError, SyntaxError):
            # Python's compiler has nesting limits of its own (20 nested loops, say) below
            # MAX_NESTING; Jinja's code is valid Python otherwise. Line 0: no line is known.
            raise TemplateSyntaxError(TOO_DEEP, 0, None, filename) from None

    def _bound(self, tree: nodes.Template, name: str | None, filename: str | None) -> None:
        """Rewrite loops and ``~`` joins in ``tree`` to go through the render limits."""
        for loop in tree.find_all(nodes.For):
            if loop.recursive:
                raise TemplateSyntaxError(
                    "recursive loops are not allowed", loop.lineno, name, filename
                )
            literal = sum(len(data.data) for data in loop.find_all(nodes.TemplateData))
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("rapport_loop"),
                [loop.iter, nodes.Const(literal)],
                [],
                None,
                None,
                lineno=loop.lineno,
            )
        for concat in list(tree.find_all(nodes.Concat)):
            _replace_node(tree, concat, _bounded_concat_call(concat))


def _nested_too_deeply(tree: nodes.Node) -> nodes.Node | None:
    """Return a node nested more than :data:`MAX_NESTING` deep in ``tree``, if there is one.

    Walked with a stack, not recursion, so any depth the parser built can be measured.
    """
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return node
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return None


def _bounded_concat_call(concat: nodes.Concat) -> nodes.Call:
    return nodes.Call(
        nodes.EnvironmentAttribute("rapport_concat"),
        [nodes.List(list(concat.nodes), lineno=concat.lineno)],
        [],
        None,
        None,
        lineno=concat.lineno,
    )


def _replace_node(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    """Swap ``old`` for ``new`` wherever ``tree`` references it."""
    for parent in [tree, *tree.find_all(nodes.Node)]:
        for name, value in parent.iter_fields():
            if value is old:
                setattr(parent, name, new)
            elif isinstance(value, list):
                parent_list = value
                for index, item in enumerate(parent_list):
                    if item is old:
                        parent_list[index] = new


def render_text(template: Template, context: Mapping[str, Any]) -> str:
    """Render ``template`` with ``context`` inside the current budget.

    What ``Template.render`` does, with the variables copied once instead of three times (its
    own copy, then the globals merged in through keyword arguments) and no call layers in
    between: four renders an email. Errors still go through Jinja's handler, which points the
    traceback at the template's lines.
    """
    spend = _BUDGET.get()  # _current(), inline: four renders an email
    if spend is None:
        raise TemplateLimitError("templates render only inside a render budget")
    environment = template.environment
    scope = {**template.globals, **context}  # the render's own: a template never writes here
    state = environment.context_class(environment, scope, template.name, template.blocks,
                                      template.globals)  # fmt: skip
    try:
        output = "".join(template.root_render_func(state))
    except Exception:
        environment.handle_exception()
    if time.perf_counter() > spend.deadline:  # only a late render calls check_time to refuse
        spend.check_time()
    return output
