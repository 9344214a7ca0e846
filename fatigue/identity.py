"""Values worked out once per immutable object, found again by the object's identity."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import orjson

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
#: Entries kept before a cache starts again (the objects a batch shares are few).
IDENTITY_LIMIT = 4096


class ByIdentity(Generic[K, V]):
    """Call ``build`` once per object: for shared immutable values a batch meets again and again.

    Looked up by identity, never equality: equal values can still be spelled differently (a
    limit of 3 or 3.0), and hashing a dataclass costs about what building a small value does.
    Each entry holds its object, so the object's id cannot be reused while the entry lives.
    Safe between threads: two threads may both build a value, and either result is the same.
    """

    def __init__(self, build: Callable[[K], V], limit: int = IDENTITY_LIMIT) -> None:
        self._build = build
        self._limit = limit
        self._entries: dict[int, tuple[K, V]] = {}

    def __call__(self, key: K) -> V:
        """Return ``build(key)``, built on the first call for this very object."""
        found = self._entries.get(id(key))
        if found is not None and found[0] is key:
            return found[1]
        if len(self._entries) >= self._limit:
            self._entries.clear()
        value = self._build(key)
        self._entries[id(key)] = (key, value)
        return value

    def many(self, keys: Sequence[K]) -> list[V]:
        """Return ``[self(key) for key in keys]``, found in one call.

        A decision's ten or so reasons were each looked up through ``__call__`` (a Python
        frame per reason, twice per batch recipient); this loop takes half the time.
        """
        entries = self._entries
        values: list[V] = []
        for key in keys:
            found = entries.get(id(key))
            if found is not None and found[0] is key:
                values.append(found[1])
            else:
                values.append(self(key))
        return values


def same_objects(left: Sequence[object], right: Sequence[object]) -> bool:
    """Whether two sequences hold the very same objects, in order (identity, not equality)."""
    return len(left) == len(right) and all(map(operator.is_, left, right))


def encoded_once(to_data: Callable[[K], Any]) -> ByIdentity[K, orjson.Fragment]:
    """Return ``to_data`` encoded as JSON once per object (orjson writes a fragment as it is).

    The JSON that holds the fragment is byte for byte what encoding the data in place wrote.
    """

    def encode(value: K) -> orjson.Fragment:
        return orjson.Fragment(orjson.dumps(to_data(value)))

    return ByIdentity(encode)


def filled(cls: type[T], fields: Mapping[str, Any]) -> T:
    """Return an instance of the frozen dataclass ``cls`` holding ``fields``, set all at once.

    What ``cls(**fields)`` makes when ``fields`` names every field: the generated ``__init__``
    of a frozen dataclass sets each one through ``object.__setattr__``, and filling the
    instance's ``__dict__`` in one update takes about a third of that. For the few objects made
    per recipient on the hot path (their ``made`` class methods, each held to its constructor
    field for field by a test); the constructor stays the way to make one anywhere else.
    ``__post_init__`` does not run: a class that checks its fields there repeats the check in
    its ``made`` (``MessageRequest``), and a test keeps the others without one.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance
