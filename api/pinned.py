"""The configuration ``rapport serve`` validated, pinned for its workers.

gunicorn restarts a worker that dies (a crash, the kernel's OOM killer, ``max_requests``) and
the new worker reads its configuration again. Read from the live files, a rules file, campaign
registry or ``RAPPORT_CONFIG`` file being edited, or deployed broken, stopped that worker from
booting, and gunicorn then shut the whole server down ("Worker failed to boot") at whatever
hour the worker happened to die. So the master validates them at start and on SIGHUP and
copies them into a private directory; workers load the copies (the rules and registry still
named as the originals). Files that do not validate on SIGHUP are logged and the copies pinned
before stay in force: configuration changes when the operator reloads, never behind their
back, and every worker serves the same.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from fatigue.errors import RapportError

log = logging.getLogger(__name__)
# Setting -> the variable naming its pinned copy (read by workers, set by the master).
PINNED = {"RULES": "RAPPORT_PINNED_RULES", "CAMPAIGNS_FILE": "RAPPORT_PINNED_CAMPAIGNS"}
CONFIG = "RAPPORT_CONFIG"
CONFIG_ORIGINAL = "RAPPORT_CONFIG_ORIGINAL"


def pinned_path(settings: Mapping[str, Any], name: str) -> Path | None:
    """Return where to read setting ``name``'s file: its pinned copy if any, else the file."""
    configured = str(settings.get(name) or "")
    if not configured:
        return None
    copy = os.environ.get(PINNED[name], "")
    if copy and not Path(copy).is_file():  # a cleaner emptied the temporary directory
        log.warning("the pinned copy %s is gone: reading %s itself", copy, configured)
        copy = ""
    return Path(copy) if copy else Path(configured)


class Pins:
    """The master's private directory of validated copies."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self.environ = environ
        self.config = environ.get(CONFIG, "")  # the operator's file (workers get a copy)
        self.directory = Path(tempfile.mkdtemp(prefix="rapport-pinned-"))
        self._serial = 0

    def pin(self, settings: Mapping[str, Any]) -> None:
        """Copy the configuration files as they are now (call once they have validated)."""
        self._serial += 1
        pinned: dict[str, str] = {}
        # New names each time: a worker starting meanwhile reads old copies or new ones whole.
        for name, variable in PINNED.items():
            configured = str(settings.get(name) or "")
            if configured:
                pinned[variable] = str(self._copy(configured, name.lower()))
        if self.config:
            pinned[CONFIG] = str(self._copy(self.config, "config"))
            pinned[CONFIG_ORIGINAL] = self.config  # read if a cleaner removes the copy
        for variable in PINNED.values():
            self.environ.pop(variable, None)
        self.environ.update(pinned)

    def repin(
        self, load: Callable[[Mapping[str, str]], Any], check: Callable[[Any], None]
    ) -> Any | None:
        """On SIGHUP: read the operator's files with ``load``, ``check`` them, and pin them.

        Return the settings pinned, or None when anything failed (a typo in ``RAPPORT_CONFIG``,
        a broken rules file): the copies pinned before stay in force. Raised here, it would
        stop gunicorn's master.
        """
        try:
            settings = load({**self.environ, CONFIG: self.config} if self.config else self.environ)
            check(settings)
            self.pin(settings)
        except (RapportError, OSError) as exc:
            log.error(
                "reload: the configuration does not validate, so workers keep the "
                "configuration pinned before: %s", exc,
            )  # fmt: skip
            return None
        log.info("reload: configuration validated and pinned for the workers")
        return settings

    def remove(self) -> None:
        """Delete the copies (the master is stopping)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def _copy(self, original: str, label: str) -> Path:
        # The label keeps two files of one name (rules/rapport.toml, rapport.toml) apart.
        copy = self.directory / f"{self._serial}-{label}-{Path(original).name}"
        shutil.copyfile(original, copy)
        return copy
