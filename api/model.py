"""The served model, hot-reloaded when a new version is published.

Publishing replaces the model directory's pointer file atomically. Each worker stats the pointer
at most once per ``interval`` seconds (a syscall, no read); when it changed, a background thread
loads the new version while requests keep using the old one, and the swap is one reference
assignment. A version that fails to load is logged and the old one keeps serving; the same
version is tried again every ``RETRY_FAILED`` seconds, in case it was repaired in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.heap import resettle_heap
from api.metrics import MODEL_LOAD_FAILURES, MODEL_RELOADS, MODEL_SERVED
from fatigue.errors import ConfigurationError

log = logging.getLogger(__name__)
POINTER = "CURRENT"  # engine.artifact.POINTER; the file whose replacement publishes a version
# A version that failed to load is tried again after this long: an operator may repair it in
# place (copy the missing files in) without publishing anew, and a worker started meanwhile
# would load it, leaving the old workers serving another version for good.
RETRY_FAILED = 60.0


class ModelHolder:
    """Hold the current model of one model directory and notice newly published versions."""

    def __init__(
        self,
        model_dir: Path,
        loader: Callable[..., Any],  # (model_dir) for the published version, (model_dir, name)
        interval: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_dir = model_dir
        self._loader = loader
        self._interval = interval
        self._monotonic = monotonic
        self._stamp = self._pointer_stamp()
        if self._stamp is None:
            raise ConfigurationError(
                f"{model_dir}: no published model (no {POINTER} pointer); train one with "
                "'rapport train' or set RAPPORT_MODEL_DIR"
            )
        self._failed_at: float | None = None  # when the published version last failed to load
        self._model = self._first_load()
        self._checked = monotonic()
        self._loading: threading.Thread | None = None
        self._lock = threading.Lock()

    def _first_load(self) -> Any:
        """Load the published version or, when it is damaged, the last published one that loads.

        A worker that gunicorn starts again (after a crash, or a restart of one) must not die on
        a broken publication: gunicorn would then stop every worker. Those already running keep
        their model; this one serves what they serve, the version published before (a rollback
        counts: the newest by name may be the one rolled back), until a good one is published.
        """
        try:
            model = self._loader(self.model_dir)
        except Exception as exc:
            model = self._fallback(exc)
            self._failed_at = self._monotonic()  # the published one is tried again later
        _serving(model)
        return model

    def _fallback(self, exc: Exception) -> Any:
        from engine.artifact import current_version, list_versions, publication_history

        published = current_version(self.model_dir)
        history = publication_history(self.model_dir)
        by_name = [v for v in reversed(list_versions(self.model_dir)) if v not in history]
        for version in [*history, *by_name]:
            if version == published:
                continue
            try:
                model = self._loader(self.model_dir, version)
            except Exception:  # an older version damaged too: try the next
                continue
            MODEL_LOAD_FAILURES.inc()
            log.error(
                "published model version %s in %s cannot be loaded (%s); serving %s until "
                "a version that loads is published", published, self.model_dir, exc, version,
            )  # fmt: skip
            return model
        raise exc

    @property
    def model(self) -> Any:
        """Return the current model, starting a reload if a new version was published."""
        now = self._monotonic()
        if now - self._checked >= self._interval:
            self._checked = now
            self._maybe_reload()
        return self._model

    def reload_now(self) -> bool:
        """Check the pointer and, if it moved, load the new version before returning."""
        stamp = self._pointer_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._load(stamp)
        return True

    def _maybe_reload(self) -> None:
        stamp = self._pointer_stamp()
        if stamp is None or (stamp == self._stamp and not self._retry_due()):
            return
        with self._lock:
            if self._loading is not None and self._loading.is_alive():
                return
            self._loading = threading.Thread(
                target=self._load, args=(stamp,), name="rapport-model-reload", daemon=True
            )
            self._loading.start()

    def _retry_due(self) -> bool:
        failed = self._failed_at
        return failed is not None and self._monotonic() - failed >= RETRY_FAILED

    def _load(self, stamp: tuple[int, int]) -> None:
        try:
            model = self._loader(self.model_dir)
        except Exception as exc:  # a bad version must not take the serving one down
            self._failed(stamp, exc)
            return
        previous, self._model = self._model, model
        self._stamp, self._failed_at = stamp, None
        resettle_heap()
        MODEL_RELOADS.inc()
        _serving(model, previous)
        log.info("now serving model version %s", getattr(model, "version", "?"))

    def _failed(self, stamp: tuple[int, int], exc: Exception) -> None:
        """Keep serving, note the failure, and try the same version only every RETRY_FAILED s."""
        if stamp != self._stamp:  # a new publication: the full story once, and counted
            MODEL_LOAD_FAILURES.inc()
            log.exception("could not load the newly published model in %s", self.model_dir)
        else:
            log.warning(
                "the published model in %s still cannot be loaded (%s); trying again in %.0f s",
                self.model_dir, exc, RETRY_FAILED,
            )  # fmt: skip
        self._stamp, self._failed_at = stamp, self._monotonic()

    def _pointer_stamp(self) -> tuple[int, int] | None:
        try:
            stat = (self.model_dir / POINTER).stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns)


def _serving(model: Any, previous: Any = None) -> None:
    """Show which version this worker serves in the metrics (workers can differ for a while)."""
    if previous is not None:
        MODEL_SERVED.labels(str(getattr(previous, "version", "?"))).set(0)
    MODEL_SERVED.labels(str(getattr(model, "version", "?"))).set(1)
