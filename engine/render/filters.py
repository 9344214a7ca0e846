"""The filters templates may use: an allow-list of Jinja's own, size-checked where needed.

Jinja filters whose output size comes from an argument (``center``, ``indent``, ``wordwrap``,
``format``) are left out; ``join``, ``replace``, ``truncate``, ``batch``, ``slice`` and ``sum``
are wrapped so their result stays small. ``safe`` and ``attr`` are left out so template data is
always escaped and attribute access always goes through the sandbox. ``money`` and ``date`` are
Rapport's own.

Every filter's result then passes through the sandbox's check (size and time budget): a chain
of growing filters inside one ``{{ }}`` (``urlencode`` triples a ``%``, ``forceescape`` makes
``&`` five characters) neither outputs nor loops until its end, so nothing else would stop it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from jinja2.sandbox import SecurityError

ALLOWED = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first",
        "float", "forceescape", "groupby", "int", "items", "last", "length", "list", "lower",
        "map", "max", "min", "reject", "rejectattr", "reverse", "round", "select",
        "selectattr", "sort", "string", "striptags", "title", "trim", "unique", "upper",
        "urlencode", "wordcount",
    }
)  # fmt: skip

CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$", "JPY": "¥", "AUD": "A$", "CAD": "C$"}
# ISO 4217 currencies whose minor unit is not a hundredth (every other one has two places).
MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip
MAX_CHUNKS = 1_000
# Filters that would print "None" (or fail) for a missing value: a price or date the catalog
# does not give is None, and the email must show it blank, as ``money`` and ``date`` do.
BLANK_FOR_NONE = frozenset(
    {
        "abs", "capitalize", "e", "escape", "lower", "round", "striptags", "title", "trim",
        "truncate", "upper", "urlencode",
    }
)  # fmt: skip


class FilterLimitError(SecurityError):
    """A filter was asked for a result past the size limits."""


def output_size(value: Any, limit: int) -> int:
    """Estimate how many characters ``value`` prints as, without building the string.

    Stops counting once past ``limit``: a list repeating one long string 100,000 times is
    cheap to hold and would be gigabytes to print.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3 + 2  # decimal digits, roughly, and the sign
    if isinstance(value, list | tuple | set | frozenset | dict):
        total = 2
        pairs = value.items() if isinstance(value, dict) else ((item, "") for item in value)
        for key, item in pairs:
            total += output_size(key, limit - total) + output_size(item, limit - total) + 2
            if total > limit:
                break
        return total
    return len(str(value))  # floats, None, dates: short by nature


def allowed_filters(
    stock: Mapping[str, Callable[..., Any]],
    *,
    max_size: int,
    check_result: Callable[[Any], None],
) -> dict[str, Callable[..., Any]]:
    """Return the allow-listed stock filters plus the size-checked and Rapport filters.

    ``check_result`` sees every filter's result before the template does, and raises to
    refuse it.
    """
    chosen = {name: stock[name] for name in ALLOWED if name in stock}
    chosen.update(_checked_filters(stock, max_size))
    chosen["money"] = money
    chosen["date"] = date
    for name in BLANK_FOR_NONE & chosen.keys():
        chosen[name] = _blank_for_none(chosen[name])
    return {name: _result_checked(chosen[name], check_result) for name in chosen}


def _result_checked(
    original: Callable[..., Any], check_result: Callable[[Any], None]
) -> Callable[..., Any]:
    """Return ``original`` with its result passed to ``check_result`` before it is used."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        check_result(result)
        return result

    # Arguments pass through untouched, so keep Jinja's marker saying which ones it adds first.
    passes = getattr(original, "jinja_pass_arg", None)
    if passes is not None:
        checked.jinja_pass_arg = passes  # type: ignore[attr-defined]
    return checked


def _blank_for_none(original: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``original`` giving "" for a None value instead of "None" or an error."""
    passes = getattr(original, "jinja_pass_arg", None)
    if passes is None:

        def blank(value: Any, *args: Any, **kwargs: Any) -> Any:
            return "" if value is None else original(value, *args, **kwargs)

        return blank

    def blank_with_context(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return "" if value is None else original(context, value, *args, **kwargs)

    # Jinja passes the environment or context first only to a filter marked so.
    blank_with_context.jinja_pass_arg = passes  # type: ignore[attr-defined]
    return blank_with_context


def _check(size: int, max_size: int, what: str) -> None:
    if size > max_size:
        raise FilterLimitError(f"{what} would be {size:,} long (limit {max_size:,})")


def _checked_filters(
    stock: Mapping[str, Callable[..., Any]], max_size: int
) -> dict[str, Callable[..., Any]]:
    join, replace, truncate = stock["join"], stock["replace"], stock["truncate"]
    batch, slice_, sum_, string = stock["batch"], stock["slice"], stock["sum"], stock["string"]

    def checked_string(value: Any) -> str:
        _check(output_size(value, max_size), max_size, "a string")
        result: str = string(value)
        return result

    def checked_join(
        eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None
    ) -> str:
        items = list(value)
        size = sum(len(str(item)) for item in items) + len(d) * max(len(items) - 1, 0)
        _check(size, max_size, "a joined string")
        return join(eval_ctx, items, d, attribute)

    def checked_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
        text = str(s)
        hits = len(text) + 1 if old == "" else text.count(old)
        hits = min(hits, count) if count is not None and count >= 0 else hits
        _check(len(text) + hits * (len(new) - len(old)), max_size, "a replaced string")
        return replace(eval_ctx, s, old, new, count)

    def checked_truncate(env: Any, s: str, length: int = 255, *args: Any, **kwargs: Any) -> str:
        end = kwargs.get("end", args[1] if len(args) > 1 else "...")
        _check(len(str(end)), max_size, "a truncation marker")
        return truncate(env, s, length, *args, **kwargs)

    def checked_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
        _check(linecount, MAX_CHUNKS, "a batch")
        return batch(value, linecount, fill_with)

    def checked_slice(env: Any, value: Iterable[Any], slices: int, fill_with: Any = None) -> Any:
        _check(slices, MAX_CHUNKS, "a slice count")
        return slice_(env, value, slices, fill_with)

    def checked_sum(
        env: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
    ) -> Any:
        if not isinstance(start, int | float):
            raise FilterLimitError("sum adds numbers only")
        return sum_(env, iterable, attribute, start)

    wrappers: list[tuple[Any, Any]] = [
        (checked_join, join),
        (checked_replace, replace),
        (checked_truncate, truncate),
        (checked_slice, slice_),
        (checked_sum, sum_),
    ]
    for wrapper, original in wrappers:
        # Keep Jinja's pass-the-context marker so the wrappers receive what the originals do.
        wrapper.jinja_pass_arg = original.jinja_pass_arg
    return {
        "join": checked_join,
        "replace": checked_replace,
        "truncate": checked_truncate,
        "batch": checked_batch,
        "slice": checked_slice,
        "sum": checked_sum,
        "string": checked_string,
    }


def money(value: Any, currency: str = "") -> str:
    """Format a price with its currency symbol: ``12.5|money('GBP')`` gives ``£12.50``."""
    try:
        # Catalog prices repeat in every email that shows the item: format each pair once.
        return _money(value, currency)
    except TypeError:  # unhashable (a list, say): format it without the cache
        return _money.__wrapped__(value, currency)


@lru_cache(maxsize=4096, typed=True)  # typed: True and 1 are equal keys otherwise
def _money(value: Any, currency: Any) -> str:
    if value is None:
        return ""  # no price: nothing to show, rather than "None"
    code = "" if currency is None else str(currency).strip().upper()
    places = MINOR_UNITS.get(code, 2)
    try:
        # Half up, as shoppers round (not to even: 1.005 is 1.01), to the currency's own places.
        amount = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        return str(value)
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{symbol}{amount:,}" if symbol else f"{amount:,} {code}".strip()


def date(value: Any, pattern: str = "%-d %B %Y") -> str:
    """Format an ISO-8601 timestamp (or datetime) with a ``strftime`` pattern."""
    if len(str(pattern)) > 64:
        raise FilterLimitError("a date pattern longer than 64 characters")
    if value is None:
        return ""  # no date: nothing to show, rather than "None" (as money does)
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return moment.strftime(str(pattern))
