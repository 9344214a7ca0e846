"""API keys with roles: stored hashed in a JSON file, compared in constant time.

Keys are 256-bit random tokens, so a single SHA-256 is a sound digest (a slow password hash
protects low-entropy secrets, which these are not). The file is re-read when it changes, so
``rapport keys create`` takes effect on a running server without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from fatigue.errors import ConfigurationError, Problem, ValidationError

KEY_PREFIX = "rpk_"

log = logging.getLogger(__name__)


class Role(StrEnum):
    """What a key may do: each endpoint accepts some roles; ``admin`` is accepted everywhere."""

    PLATFORM = "platform"
    MARKETER = "marketer"
    ENGINEER = "engineer"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    """One key's public record: its name, roles and the digest of its secret."""

    name: str
    roles: frozenset[Role]
    digest: str
    created_at: str

    def allows(self, accepted: Iterable[Role]) -> bool:
        """Return whether this key holds ``admin`` or any of the ``accepted`` roles."""
        return Role.ADMIN in self.roles or not self.roles.isdisjoint(accepted)


def digest_of(token: str) -> str:
    """Return the stored form of a key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_roles(text: str) -> frozenset[Role]:
    """Parse ``platform,marketer`` into roles, naming any unknown one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValidationError(Problem("at least one role is needed", field="roles"))
    unknown = [name for name in names if name not in Role.__members__.values()]
    if unknown:
        known = ", ".join(role.value for role in Role)
        raise ValidationError(
            Problem(f"unknown role {', '.join(unknown)} (known: {known})", field="roles")
        )
    return frozenset(Role(name) for name in names)


class KeysUnreadable(ConfigurationError):
    """The keys file cannot be read (damaged, or gone after it was read)."""


class KeyRing:
    """The keys in one file, reloaded when the file's modification stamp changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None  # None: no file (yet, or any more)
        self._keys: tuple[ApiKey, ...] = ()
        self._read = False  # a good file was read at least once
        self._broken: KeysUnreadable | None = None  # the file as it is now cannot be read
        self._lock = threading.Lock()

    def current(self) -> tuple[ApiKey, ...]:
        """Return the current keys, re-reading the file if it changed since the last call.

        A file that breaks or disappears while serving (a bad copy, a deploy that removed it)
        leaves the keys read before in use, said once in the log and by ``check`` (/readyz):
        refusing every request would turn one bad edit into an outage. A file that was never
        read raises ``KeysUnreadable`` (logged once per change of the file); no file at all
        gives no keys (a server may start before ``rapport keys create``).
        """
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._reload(stamp)
        if self._broken is not None and not self._read:
            raise KeysUnreadable(str(self._broken))  # a fresh one: threads raise it at once
        return self._keys

    def _reload(self, stamp: tuple[int, int] | None) -> None:
        try:
            self._read_file(stamp)
        finally:
            # Last: a thread that sees this stamp skips the lock and reads ``_keys`` at once,
            # which must then be the keys of this stamp (set first, a fresh worker answered a
            # valid key 401 while another thread was still reading the file).
            self._stamp = stamp

    def _read_file(self, stamp: tuple[int, int] | None) -> None:
        try:
            if stamp is None:
                if not self._read:
                    self._broken = None  # never read: no keys, as documented
                    return
                raise KeysUnreadable(f"{self.path}: the API keys file is gone")
            self._keys = tuple(_read_keys(self.path))
        except KeysUnreadable as exc:
            self._broken = exc
            if self._read:
                log.error("%s; the keys read before stay in use until it is fixed", exc)
            else:
                log.error("%s; every API request is refused (503) until it is fixed", exc)
        else:
            if self._broken is not None:
                log.warning("%s: the API keys file reads again", self.path)
            self._read, self._broken = True, None

    def check(self) -> None:
        """Raise ``KeysUnreadable`` when the file cannot be used as it is (for /readyz)."""
        self.current()
        broken = self._broken
        if broken is not None:
            raise KeysUnreadable(str(broken))

    def authenticate(self, token: str) -> ApiKey | None:
        """Return the key whose secret is ``token``, comparing every digest in constant time."""
        presented = digest_of(token)
        found: ApiKey | None = None
        for key in self.current():
            # No early exit: the time taken must not reveal which stored digest matched.
            if hmac.compare_digest(presented, key.digest):
                found = key
        return found

    def create(self, name: str, roles: frozenset[Role], *, replace: bool = False) -> str:
        """Add a key, write the file atomically, and return the secret (shown only once).

        ``replace`` swaps out a key of the same name (the demo's own, made afresh each run).
        """
        if not name.strip():
            raise ValidationError(Problem("a key needs a name", field="name"))
        with _locked(self.path):  # two creates at once: each reads what the other wrote
            existing = list(_read_keys(self.path)) if self.path.exists() else []
            if replace:
                existing = [key for key in existing if key.name != name]
            if any(key.name == name for key in existing):
                raise ValidationError(Problem(f"a key named {name!r} already exists", field="name"))
            token = KEY_PREFIX + secrets.token_urlsafe(32)
            created = datetime.now(UTC).isoformat(timespec="seconds")
            existing.append(ApiKey(name, roles, digest_of(token), created))
            _write_keys(self.path, existing)
        return token


def _stamp(path: Path) -> tuple[int, int] | None:
    """Return what tells a changed file: its modification time and size (None: no file)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the keys file (the file itself is replaced, not edited)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _read_keys(path: Path) -> list[ApiKey]:
    """Parse the keys file, naming the file and entry of anything malformed."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        entries = document["keys"]
        return [
            ApiKey(
                name=str(entry["name"]),
                roles=frozenset(Role(role) for role in entry["roles"]),
                digest=str(entry["digest"]),
                created_at=str(entry.get("created_at", "")),
            )
            for entry in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeysUnreadable(f"{path}: unreadable API keys file: {exc!r}") from exc


def _write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Write the keys file through a temporary file and a rename.

    A new file is readable by its owner only; a replaced one keeps its mode and owner.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "keys": [
            {
                "name": key.name,
                "roles": sorted(role.value for role in key.roles),
                "digest": key.digest,
                "created_at": key.created_at,
            }
            for key in keys
        ]
    }
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".keys-", suffix=".json")
    if path.exists():  # keep who may read it: a server running as another user must still
        kept = path.stat()
        os.fchmod(fd, kept.st_mode & 0o777)
        if os.geteuid() == 0:  # root (sudo rapport keys create) can hand it back to its owner
            os.fchown(fd, kept.st_uid, kept.st_gid)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
