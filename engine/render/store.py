"""The versioned template store: immutable numbered versions, one published, atomic switches.

One small contract (:class:`TemplateStore`) with two backends: :class:`FileTemplateStore`
(a data directory shared by every worker process) and :class:`MemoryTemplateStore` (tests,
development). Saving validates first; publishing and rolling back switch one pointer
atomically; old versions stay readable and diffable. Both implement
:class:`~engine.render.library.TemplateLibrary`, so the renderer reads from either.
"""

from __future__ import annotations

import difflib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from engine.render.library import NAME_PATTERN, TemplateSource
from fatigue.clock import Clock, utc_now
from fatigue.errors import ConflictError, NotFoundError, Problem, ValidationError

Validator = Callable[[TemplateSource], None]


@dataclass(frozen=True)
class VersionInfo:
    """Who saved a version, when, why, and a hash of its files."""

    name: str
    version: int
    author: str
    created_at: datetime
    note: str
    content_hash: str

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "version": self.version,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "note": self.note,
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> VersionInfo:
        """Rebuild from :meth:`as_dict` output."""
        return cls(
            name=str(data["name"]),
            version=int(str(data["version"])),
            author=str(data["author"]),
            created_at=datetime.fromisoformat(str(data["created_at"])),
            note=str(data["note"]),
            content_hash=str(data["content_hash"]),
        )


@dataclass(frozen=True)
class Publication:
    """Which version is published, and the earlier ones a rollback returns to, newest last."""

    version: int
    published_by: str
    published_at: datetime
    previous: tuple[int, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "version": self.version,
            "published_by": self.published_by,
            "published_at": self.published_at.isoformat(),
            "previous": list(self.previous),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Publication:
        """Rebuild from :meth:`as_dict` output."""
        previous = data.get("previous", [])
        return cls(
            version=int(str(data["version"])),
            published_by=str(data["published_by"]),
            published_at=datetime.fromisoformat(str(data["published_at"])),
            previous=tuple(int(v) for v in previous) if isinstance(previous, list) else (),
        )


def check_name(name: str) -> None:
    """Refuse names that are not lower-case slugs (they become folder names)."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            Problem("template names are lower-case letters, digits and dashes", field="name")
        )


class TemplateStore(ABC):
    """Versions of templates: save (validated), read, publish, roll back, diff."""

    def __init__(self, validator: Validator | None = None, clock: Clock = utc_now) -> None:
        if validator is None:
            from engine.render.validate import validate

            validator = validate
        self.validator = validator
        self.clock = clock

    # -- what each backend provides ----------------------------------------------------------

    @abstractmethod
    def names(self) -> list[str]:
        """Return every template name, sorted."""

    @abstractmethod
    def versions(self, name: str) -> list[VersionInfo]:
        """Return every version of ``name``, oldest first; ``NotFoundError`` if unknown."""

    @abstractmethod
    def read(self, name: str, version: int) -> TemplateSource:
        """Return the files of one version; ``NotFoundError`` if it does not exist."""

    @abstractmethod
    def publication(self, name: str) -> Publication | None:
        """Return what is published for ``name`` (``None`` if nothing yet)."""

    @abstractmethod
    def _append(
        self, name: str, files: Mapping[str, str], author: str, note: str, after: int | None
    ) -> VersionInfo:
        """Store a new version under the next free number (``after + 1`` only), atomically.

        With ``after``, a number already taken raises ``ConflictError``: the check and the
        save are one step, so two saves from one version cannot both land.
        """

    @abstractmethod
    def _switch(
        self, name: str, change: Callable[[Publication | None], Publication]
    ) -> Publication:
        """Apply ``change`` to the publication of ``name`` atomically and return the result."""

    # -- the contract everything else uses -----------------------------------------------------

    def save(
        self,
        name: str,
        files: Mapping[str, str],
        author: str,
        note: str,
        after: int | None = None,
    ) -> VersionInfo:
        """Validate ``files`` and store them as the next version (not published).

        ``after`` is the version the change was made from: when another was saved since, the
        save raises ``ConflictError`` naming it instead of undoing that change.
        """
        check_name(name)
        if after is not None:
            self.read(name, after)  # NotFoundError: a change cannot come from a version never saved
        self.validator(TemplateSource(name, files))
        return self._append(name, files, author, note, after)

    def conflict(self, name: str, after: int) -> ConflictError:
        """Describe the versions saved since ``after`` (for a refused save)."""
        latest = self.versions(name)[-1]
        note = f" ({latest.note})" if latest.note else ""
        return ConflictError(
            f"version {latest.version} of {name!r} was saved by {latest.author} at "
            f"{latest.created_at.isoformat(timespec='seconds')}{note} since version {after}: "
            "build on it (give it as 'base'), or save without 'base' to save over it"
        )

    def source(self, name: str, version: int | None = None) -> TemplateSource:
        """Return a version's files: the published one unless ``version`` is given."""
        if version is None:
            publication = self.publication(name)
            if publication is None:
                raise NotFoundError(f"template {name!r} has no published version")
            version = publication.version
        return self.read(name, version)

    def publish(self, name: str, version: int, author: str) -> Publication:
        """Make ``version`` the published one, remembering the current for rollback."""
        self.read(name, version)
        now = self.clock()

        def change(current: Publication | None) -> Publication:
            if current is not None and current.version == version:
                return current  # already live: nothing to roll back to, nothing to change
            previous = (*current.previous, current.version) if current else ()
            return Publication(version, author, now, previous[-50:])

        return self._switch(name, change)

    def rollback(self, name: str, author: str) -> Publication:
        """Return to the version published before the current one."""
        now = self.clock()

        def change(current: Publication | None) -> Publication:
            if current is None or not current.previous:
                raise NotFoundError(f"template {name!r} has no earlier publication to roll back to")
            return Publication(current.previous[-1], author, now, current.previous[:-1])

        return self._switch(name, change)

    def diff(self, name: str, old: int, new: int) -> str:
        """Return a unified diff of every file between versions ``old`` and ``new``."""
        before, after = self.read(name, old).files, self.read(name, new).files
        lines: list[str] = []
        for filename in sorted(set(before) | set(after)):
            lines.extend(
                difflib.unified_diff(
                    before.get(filename, "").splitlines(keepends=True),
                    after.get(filename, "").splitlines(keepends=True),
                    f"{name}/v{old}/{filename}",
                    f"{name}/v{new}/{filename}",
                )
            )
        return "".join(lines)


class MemoryTemplateStore(TemplateStore):
    """Templates in this process's memory: for tests and development only."""

    def __init__(self, validator: Validator | None = None, clock: Clock = utc_now) -> None:
        super().__init__(validator, clock)
        self._versions: dict[str, list[tuple[VersionInfo, TemplateSource]]] = {}
        self._published: dict[str, Publication] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Return every template name, sorted."""
        with self._lock:
            return sorted(self._versions)

    def versions(self, name: str) -> list[VersionInfo]:
        """Return every version of ``name``, oldest first."""
        with self._lock:
            if name not in self._versions:
                raise NotFoundError(f"no template named {name!r}")
            return [info for info, _ in self._versions[name]]

    def read(self, name: str, version: int) -> TemplateSource:
        """Return the files of one version."""
        with self._lock:
            stored = self._versions.get(name, [])
            if not 1 <= version <= len(stored):
                raise NotFoundError(f"template {name!r} has no version {version}")
            return stored[version - 1][1]

    def publication(self, name: str) -> Publication | None:
        """Return what is published for ``name``."""
        with self._lock:
            return self._published.get(name)

    def _append(
        self, name: str, files: Mapping[str, str], author: str, note: str, after: int | None
    ) -> VersionInfo:
        with self._lock:
            stored = self._versions.setdefault(name, [])
            number = len(stored) + 1
            taken = after is not None and number != after + 1
            if not taken:
                source = TemplateSource(name, files, number)
                info = VersionInfo(name, number, author, self.clock(), note, source.digest)
                stored.append((info, source))
                return info
        assert after is not None
        raise self.conflict(name, after)  # outside the lock: it reads the versions

    def _switch(
        self, name: str, change: Callable[[Publication | None], Publication]
    ) -> Publication:
        with self._lock:
            publication = change(self._published.get(name))
            self._published[name] = publication
            return publication
