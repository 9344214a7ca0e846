"""Whether a directory could be written, asked before work whose output would go there.

Shared by the model artifact, the event log, the server's start-up checks and the simulation
report, so each fails before it starts rather than after it has done the work.
"""

from __future__ import annotations

import os
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """Return ``path`` if it exists, else its closest existing parent (what would hold it)."""
    return next(p for p in (path, *path.parents) if p.exists())


def unwritable(directory: Path) -> str:
    """Say why ``directory`` could not be made or written in ("" when it could), making nothing."""
    existing = nearest_existing(directory)
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return ""
