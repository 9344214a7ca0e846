"""Fatigue stores behind a URL: ``memory://`` and ``redis://``, one abstract contract."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from fatigue.errors import ConfigurationError
from fatigue.store.base import FatigueStore

__all__ = ["SCHEMES", "FatigueStore", "masked_url", "store_from_url"]

# The user and password of a URL, up to its last "@" before the path (a password may hold "@"),
# also in one missing its scheme's colon; and a password given as a query parameter.
_CREDENTIALS = re.compile(r"//[^/?#]*@")
_PASSWORD_QUERY = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """Return ``url`` with its user and password as ``***``: for error messages and logs."""
    return _PASSWORD_QUERY.sub(r"\1***", _CREDENTIALS.sub("//***@", url))


def _memory(url: str) -> FatigueStore:
    from fatigue.store.memory import MemoryStore

    return MemoryStore()


def _redis(url: str) -> FatigueStore:
    from fatigue.store.redis import RedisStore

    return RedisStore(url)


SCHEMES: dict[str, Callable[[str], FatigueStore]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
}


def scheme_of(url: str) -> str:
    """Return a store URL's scheme as ``store_from_url`` reads it (case and spaces ignored)."""
    return urlsplit(url.strip()).scheme


def in_memory(url: str) -> bool:
    """Whether the store a URL names lives inside each process (``memory://``, any spelling)."""
    return scheme_of(url) == "memory"


def store_from_url(url: str) -> FatigueStore:
    """Return the store a URL names; raise ConfigurationError for an unknown scheme."""
    scheme = scheme_of(url)
    factory = SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(SCHEMES))
        raise ConfigurationError(
            f"unknown fatigue store URL {masked_url(url)!r}: expected one of {known}"
        )
    return factory(url)
