"""The rules and campaign registry as ``rapport serve`` validated them, pinned for its workers.

gunicorn restarts a worker that dies (a crash, the kernel's OOM killer, ``max_requests``) and
the new worker reads its configuration again. Read from the live files, a rules file being
edited, or deployed broken, stopped that worker from booting, and gunicorn then shut the whole
server down ("Worker failed to boot") at whatever hour the worker happened to die. So the
master validates both files at start and on SIGHUP, and copies them into a private directory;
workers load the copies, named as the originals. A file that does not validate on SIGHUP is
logged and the copies pinned before stay in force: configuration changes when the operator
reloads, never behind their back, and every worker serves the same rules.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from fatigue.errors import RapportError

log = logging.getLogger(__name__)
# Setting -> the variable naming its pinned copy (read by workers, set by the master).
PINNED = {"RULES": "RAPPORT_PINNED_RULES", "CAMPAIGNS_FILE": "RAPPORT_PINNED_CAMPAIGNS"}


def pinned_path(settings: Mapping[str, Any], name: str) -> Path | None:
    """Return where to read setting ``name``'s file: its pinned copy if any, else the file."""
    configured = str(settings.get(name) or "")
    if not configured:
        return None
    copy = os.environ.get(PINNED[name], "")
    return Path(copy) if copy and Path(copy).is_file() else Path(configured)


class Pins:
    """The master's private directory of validated copies."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self.environ = environ
        self.directory = Path(tempfile.mkdtemp(prefix="rapport-pinned-"))
        self._serial = 0

    def pin(self, settings: Mapping[str, Any]) -> None:
        """Copy each configured file as it is now (call once it has validated)."""
        self._serial += 1
        for name, variable in PINNED.items():
            configured = str(settings.get(name) or "")
            if not configured:
                self.environ.pop(variable, None)
                continue
            # A new name for each pinning: a worker starting now reads the old copy or the
            # new one whole, never a half-written file.
            copy = self.directory / f"{self._serial}-{Path(configured).name}"
            shutil.copyfile(configured, copy)
            self.environ[variable] = str(copy)

    def repin(self, settings: Mapping[str, Any], check: Any) -> bool:
        """On SIGHUP: pin the files again if ``check(settings)`` passes; else keep the old."""
        try:
            check(settings)
            self.pin(settings)
        except (RapportError, OSError) as exc:  # raised here, gunicorn's master would exit
            log.error(
                "reload: the configuration does not validate, so workers keep the rules and "
                "campaign registry pinned before: %s", exc,
            )  # fmt: skip
            return False
        log.info("reload: rules and campaign registry validated and pinned for the workers")
        return True

    def remove(self) -> None:
        """Delete the copies (the master is stopping)."""
        shutil.rmtree(self.directory, ignore_errors=True)
