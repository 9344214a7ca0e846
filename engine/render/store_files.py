"""The filesystem template store, safe for several worker processes sharing one directory.

Layout under the data directory (``RAPPORT_TEMPLATES_DIR``)::

    <name>/versions/000001/      the files of version 1, plus version.json (author, time, note)
    <name>/published.json        the published version and the rollback stack
    <name>/.lock                 held (flock) only while publication changes

A version is written into a temporary folder and renamed to the next free number: renaming a
folder onto an existing, non-empty one fails, so two processes saving at once get two distinct
numbers without a lock, and nobody ever sees a half-written version. ``published.json`` is
replaced with ``os.replace`` under an exclusive ``flock``, so publish and rollback are atomic
and never lose each other's update. A template never seen before is seeded from the bundled
folder as version 1 (published), by renaming a complete folder into place.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from engine.render.library import NAME_PATTERN, BundledLibrary, TemplateSource, read_folder
from engine.render.store import Publication, TemplateStore, Validator, VersionInfo, check_name
from fatigue.clock import Clock, utc_now
from fatigue.errors import NotFoundError, StoreError

VERSION_META = "version.json"
PUBLISHED = "published.json"
SEED_AUTHOR = "rapport"


class FileTemplateStore(TemplateStore):
    """Template versions in a data directory shared by every worker process."""

    def __init__(
        self,
        root: str | Path,
        *,
        seed: BundledLibrary | None = None,
        validator: Validator | None = None,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(validator, clock)
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the template directory {self.root}: {exc}") from exc
        self._cache: dict[tuple[str, int], TemplateSource] = {}
        self._cache_lock = threading.Lock()
        self._published: dict[str, tuple[tuple[int, int, int], Publication]] = {}
        self._published_paths: dict[str, str] = {}
        if seed is not None:
            for source in seed:
                self._seed(source)

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Return every template name, sorted."""
        found = (path.parent.parent.name for path in self.root.glob("*/versions/000001"))
        return sorted(name for name in found if NAME_PATTERN.match(name))

    def _versions_dir(self, name: str) -> Path:
        check_name(name)
        folder = self.root / name / "versions"
        if not folder.is_dir():
            raise NotFoundError(f"no template named {name!r}")
        return folder

    def versions(self, name: str) -> list[VersionInfo]:
        """Return every version of ``name``, oldest first."""
        folder = self._versions_dir(name)
        infos = []
        for path in sorted(folder.glob("[0-9]" * 6)):
            meta = json.loads((path / VERSION_META).read_text(encoding="utf-8"))
            infos.append(VersionInfo.from_dict(meta))
        return infos

    def read(self, name: str, version: int) -> TemplateSource:
        """Return the files of one version (versions never change, so they are cached)."""
        key = (name, version)
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        folder = self._versions_dir(name) / f"{version:06d}"
        if version < 1 or not folder.is_dir():
            raise NotFoundError(f"template {name!r} has no version {version}")
        files = read_folder(folder).files
        source = TemplateSource(name, files, version)
        with self._cache_lock:
            self._cache[key] = source
        return source

    def publication(self, name: str) -> Publication | None:
        """Return what is published for ``name`` (re-read only when its file was replaced).

        Every composition asks; another worker may publish at any moment, so the file is
        checked each time, but a ``stat`` costs a tenth of reading and parsing it.
        """
        path = self._published_paths.get(name)
        if path is None:  # resolving a name costs more than the stat; a name's path never moves
            path = self._published_paths[name] = str(self._versions_dir(name).parent / PUBLISHED)
        try:
            seen = os.stat(path)
            stamp = (seen.st_ino, seen.st_mtime_ns, seen.st_size)
            cached = self._published.get(name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            found = Publication.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        self._published[name] = (stamp, found)
        return found

    # -- writing ---------------------------------------------------------------------------

    def _write_version(
        self, folder: Path, name: str, files: Mapping[str, str], author: str, note: str, number: int
    ) -> VersionInfo:
        for filename, text in files.items():
            (folder / filename).write_text(text, encoding="utf-8")
        source = TemplateSource(name, files, number)
        info = VersionInfo(name, number, author, self.clock(), note, source.digest)
        (folder / VERSION_META).write_text(json.dumps(info.as_dict(), indent=2), encoding="utf-8")
        return info

    def _append(
        self, name: str, files: Mapping[str, str], author: str, note: str, after: int | None
    ) -> VersionInfo:
        versions = self.root / name / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        while True:
            taken = [int(path.name) for path in versions.glob("[0-9]" * 6)]
            number = max(taken, default=0) + 1 if after is None else after + 1
            staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=self.root))
            info = self._write_version(staging, name, files, author, note, number)
            try:
                staging.rename(versions / f"{number:06d}")  # claims the number, or fails
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise StoreError(f"cannot save {name!r}: {exc}") from exc
                if after is not None:  # someone saved after the version this change came from
                    raise self.conflict(name, after) from None
                continue  # another process took this number: try the next one
            return info

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        folder = self._versions_dir(name).parent
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _switch(
        self, name: str, change: Callable[[Publication | None], Publication]
    ) -> Publication:
        with self._locked(name):
            publication = change(self.publication(name))
            target = self.root / name / PUBLISHED
            _atomic_write(target, json.dumps(publication.as_dict(), indent=2))
            return publication

    def _seed(self, source: TemplateSource) -> None:
        if (self.root / source.name).exists():
            return
        staging = Path(tempfile.mkdtemp(prefix=".seeding-", dir=self.root))
        first = staging / "versions" / f"{1:06d}"
        first.mkdir(parents=True)
        self._write_version(first, source.name, source.files, SEED_AUTHOR, "bundled template", 1)
        publication = Publication(1, SEED_AUTHOR, self.clock())
        (staging / PUBLISHED).write_text(json.dumps(publication.as_dict(), indent=2))
        try:
            staging.rename(self.root / source.name)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process seeded it first


def _atomic_write(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def store_from_env(environ: Mapping[str, str] | None = None) -> FileTemplateStore:
    """Open the store at ``RAPPORT_TEMPLATES_DIR`` (default ``var/templates``), seeded."""
    environ = os.environ if environ is None else environ
    root = environ.get("RAPPORT_TEMPLATES_DIR", "var/templates")
    return FileTemplateStore(root, seed=BundledLibrary())
