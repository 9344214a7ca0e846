"""MJML's own validation rules: known attributes, valid attribute values and valid nesting.

The reference compiler validates a template before compiling it (``validationLevel``
``soft``/``strict``: "Attribute font-wieght is illegal", "mj-column cannot be used inside
mj-body"). The ``mjml`` Python package (0.12) has no validator yet, so an unknown attribute was
silently ignored and an invalid value (``padding="x"``) crashed the compiler. These rules are
the reference validator's, driven by the compiler's own declarations: each component's
``allowed_attrs()`` (its attributes and their types, ported from the reference compiler) and
the reference compiler's table of which element may hold which. The messages are plain words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

# Attributes every element takes (the reference validator's whitelist).
GLOBAL_ATTRIBUTES = frozenset({"mj-class", "css-class"})
# Where the package declares less than the reference compiler and still reads the attribute.
PACKAGE_GAPS: dict[str, dict[str, str]] = {
    "mj-body": {"width": "unit(px)", "background-color": "color"},
    "mj-group": {
        "width": "unit(px,%)",
        "vertical-align": "enum(top,bottom,middle)",
        "direction": "enum(ltr,rtl)",
        "background-color": "color",
    },
    "mj-raw": {"position": "enum(file-start)"},
    "mj-style": {"inline": "string"},
}
# Where the package declares another type than the reference compiler (and renders the
# reference's values: letter-spacing="0.1em" comes out as written).
REFERENCE_TYPES: dict[str, dict[str, str]] = {
    "mj-button": {"letter-spacing": "unitWithNegative(px,em)"},
    "mj-text": {"letter-spacing": "unitWithNegative(px,em)"},
}
# Which elements each element may hold (the reference compiler's mjml-preset-core table).
CHILDREN: dict[str, frozenset[str]] = {
    tag: frozenset(children.split())
    for tag, children in {
        "mjml": "mj-body mj-head mj-raw",
        "mj-accordion": "mj-accordion-element mj-raw",
        "mj-accordion-element": "mj-accordion-title mj-accordion-text mj-raw",
        "mj-body": "mj-raw mj-section mj-wrapper mj-hero",
        "mj-carousel": "mj-carousel-image",
        "mj-column": "mj-accordion mj-button mj-carousel mj-divider mj-image mj-raw mj-social "
        "mj-spacer mj-table mj-text mj-navbar",
        "mj-group": "mj-column mj-raw",
        "mj-head": "mj-attributes mj-breakpoint mj-html-attributes mj-font mj-preview mj-style "
        "mj-title mj-raw",
        "mj-hero": "mj-accordion mj-button mj-carousel mj-divider mj-image mj-social mj-spacer "
        "mj-table mj-text mj-navbar mj-raw",
        "mj-navbar": "mj-navbar-link mj-raw",
        "mj-section": "mj-column mj-group mj-raw",
        "mj-social": "mj-social-element mj-raw",
        "mj-wrapper": "mj-hero mj-raw mj-section",
    }.items()
}
# Elements that may hold anything (``mj-attributes`` sets defaults for any element), and
# elements that are not components (attribute defaults), checked by neither rule.
ANY_CHILD = frozenset({"mj-attributes"})
# Attribute defaults (every element's, or a named class's): checked against every element.
DEFAULTS = frozenset({"mj-all", "mj-class"})
NOT_COMPONENTS = frozenset({"mjml", "mj-all", "mj-class", "mj-include"})

# CSS colour names as the reference validator knows them, plus ``transparent``.
_COLOR_NAME_TEXT = """
    aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue
    blueviolet brown burlywood cadetblue chartreuse chocolate coral cornflowerblue cornsilk
    crimson cyan darkblue darkcyan darkgoldenrod darkgray darkgreen darkgrey darkkhaki
    darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon darkseagreen
    darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink deepskyblue
    dimgray dimgrey dodgerblue firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite
    gold goldenrod gray green greenyellow grey honeydew hotpink indianred indigo ivory khaki
    lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan
    lightgoldenrodyellow lightgray lightgreen lightgrey lightpink lightsalmon lightseagreen
    lightskyblue lightslategray lightslategrey lightsteelblue lightyellow lime limegreen linen
    magenta maroon mediumaquamarine mediumblue mediumorchid mediumpurple mediumseagreen
    mediumslateblue mediumspringgreen mediumturquoise mediumvioletred midnightblue mintcream
    mistyrose moccasin navajowhite navy oldlace olive olivedrab orange orangered orchid
    palegoldenrod palegreen paleturquoise palevioletred papayawhip peachpuff peru pink plum
    powderblue purple rebeccapurple red rosybrown royalblue saddlebrown salmon sandybrown
    seagreen seashell sienna silver skyblue slateblue slategray slategrey snow springgreen
    steelblue tan teal thistle tomato turquoise violet wheat white whitesmoke yellow
    yellowgreen transparent"""
COLOR_NAMES = frozenset(_COLOR_NAME_TEXT.split())
_COLOR = re.compile(
    r"#(?:[0-9a-f]{3}){1,2}|rgb\(\s*\d{1,3}\s*(?:,\s*\d{1,3}\s*){2}\)"
    r"|rgba\(\s*\d{1,3}\s*(?:,\s*\d{1,3}\s*){2},\s*(?:\d(?:\.\d+)?|\.\d+)\s*\)",
    re.IGNORECASE,
)
_PARAMETERS = re.compile(r"\(([^)]*)\)(?:\{(\d+)(?:,(\d+))?\})?")


@cache
def declarations() -> Mapping[str, Mapping[str, str | None]]:
    """Return each component's attributes and their declared types, as the compiler has them."""
    from mjml.core.registry import components, register_core_components

    register_core_components()
    known: dict[str, dict[str, str | None]] = {}
    for tag, component in components.items():
        attributes: dict[str, str | None] = dict.fromkeys(component.default_attrs())
        attributes.update(component.allowed_attrs())
        attributes.update(PACKAGE_GAPS.get(tag, {}))
        attributes.update(REFERENCE_TYPES.get(tag, {}))
        known[tag] = attributes
    return known


def unknown_attribute(tag: str, name: str) -> str | None:
    """Return why ``name`` is not an attribute of ``<tag>``, or None when it is one."""
    if tag in DEFAULTS:  # defaults for any element: an attribute some element takes
        if name in GLOBAL_ATTRIBUTES or (tag, name) == ("mj-class", "name") or _declared(name):
            return None
        return f'<{tag}> sets "{name}", which no MJML element has: MJML would ignore it'
    attributes = declarations().get(tag)
    if attributes is None or name in attributes or name in GLOBAL_ATTRIBUTES:
        return None
    close = sorted(attributes, key=lambda known: _distance(name, known))[:1]
    hint = f' (did you mean "{close[0]}"?)' if close and _distance(name, close[0]) <= 2 else ""
    return f'<{tag}> has no attribute "{name}"{hint}: MJML would ignore it'


def invalid_value(tag: str, name: str, value: str) -> str | None:
    """Return why ``value`` is not a valid ``name`` of ``<tag>``, or None when it is valid."""
    if tag in DEFAULTS:  # valid for one element that takes it is enough
        # Untyped declarations (a default the package lists without a type) say nothing.
        kinds = [kind for kind in _declared(name) if kind] or [""]
        reasons = [_expected(kind, value.strip()) for kind in kinds]
        expected = None if not reasons or None in reasons else reasons[0]
    else:
        declared = declarations().get(tag, {}).get(name)
        expected = _expected(declared or "", value.strip())
    if expected is None:
        return None
    return f'{name}="{value}" on <{tag}> is not valid: {expected}'


def misplaced(tag: str, parent: str) -> str | None:
    """Return why ``<tag>`` may not stand inside ``<parent>``, or None when it may."""
    if tag in NOT_COMPONENTS or tag not in declarations() or parent in ANY_CHILD:
        return None
    if parent in NOT_COMPONENTS - {"mjml"} or tag in CHILDREN.get(parent, frozenset()):
        return None
    parents = sorted(name for name, children in CHILDREN.items() if tag in children)
    where = " or ".join(f"<{name}>" for name in parents) or "no other element"
    return f"<{tag}> cannot be used inside <{parent}>; it belongs inside {where}"


@cache
def _declared(name: str) -> frozenset[str | None]:
    """Return the types the elements declaring attribute ``name`` give it (none: unknown)."""
    return frozenset(attrs[name] for attrs in declarations().values() if name in attrs)


def _expected(declared: str, value: str) -> str | None:
    """Return what a value of type ``declared`` must look like, if ``value`` is not one."""
    kind = declared.split("(", 1)[0].lower()
    if kind in {"unit", "unitwithnegative"}:
        return _unit(declared, value, negative=kind == "unitwithnegative")
    if kind == "color":
        if value.lower() in COLOR_NAMES or _COLOR.fullmatch(value):
            return None
        return "write a colour such as #ff6600, #f60, rgb(255,102,0) or a name such as red"
    if kind == "enum":
        choices = _parameters(declared)[0]
        if value in choices:
            return None
        return "write one of " + ", ".join(choice or "nothing" for choice in choices)
    if kind == "boolean":
        return None if value in {"true", "false"} else "write true or false"
    if kind == "integer":
        return None if value.isascii() and value.isdigit() else "write a whole number, e.g. 0"
    return None  # string, or declared without a type: anything goes


def _unit(declared: str, value: str, *, negative: bool) -> str | None:
    units, least, most = _parameters(declared)
    number = r"-?(?:\d+(?:\.\d+)?|\.\d+)" if negative else r"(?:\d+(?:\.\d+)?|\.\d+)"
    names = "|".join(re.escape(unit) for unit in units if unit and unit != "auto")
    optional = "?" if "" in units else ""  # ``unit(px,%,)``: a bare number too
    one = rf"(?:{number}(?:{names}){optional}|0{'|auto' if 'auto' in units else ''})"
    if re.fullmatch(rf"{one}(?: +{one}){{{least - 1},{most - 1}}}", value):
        return None
    written = [unit for unit in units if unit and unit != "auto"]
    size = ("a number alone or with " if "" in units else "a number with ") + " or ".join(written)
    example = " ".join(
        ["10" + (written[0] if written else "px"), "20" + (written[0] if written else "px")][:most]
    )
    if most == 1:
        return f'write {size} (e.g. "{example}")'
    return f'write {least} to {most} sizes separated by spaces, each {size} (e.g. "{example}")'


def _parameters(declared: str) -> tuple[list[str], int, int]:
    """Return the values between brackets and the count range: ``unit(px,%){1,4}``."""
    found = _PARAMETERS.search(declared)
    if found is None:
        return [], 1, 1
    least = int(found.group(2) or 1)
    return found.group(1).split(","), least, int(found.group(3) or least)


def _distance(first: str, second: str) -> int:
    """Return the edit distance between two attribute names (for "did you mean")."""
    previous = list(range(len(second) + 1))
    for i, left in enumerate(first, start=1):
        current = [i]
        for j, right in enumerate(second, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right))
            )
        previous = current
    return previous[-1]
