"""Whether the state store still holds the state this host's event log was applied to.

A Redis restarted without persistence, or flushed, comes back answering and empty: every
unsubscribe and cap it held is gone, and nothing failed that readiness could see. The store
keeps an identity key (no TTL, so it goes only with the data), and this host keeps the identity
its event log was applied to beside the log (``EVENT_LOG_DIR/store-identity``). When they
differ, ``/readyz`` fails (``store_state``) until ``rapport events replay`` has put this host's
events back into the store and recorded its identity again.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fatigue.errors import RapportError
from fatigue.store.base import FatigueStore

IDENTITY_FILE = "store-identity"


class StoreLost(RapportError):
    """The state store no longer holds what this host's events were applied to."""


def check_store_state(store: FatigueStore, directory: Path) -> None:
    """Raise ``StoreLost`` when the store's identity is not the one this host knows.

    A host that knows none (its first start, or a new host) takes the store's, or gives it
    one when it has none (a new store). A memory store lives and dies with the process.
    """
    if not store.durable:
        return
    known = _known(directory)
    held = store.identity()
    if not known:
        _remember(directory, held or store.claim_identity(uuid.uuid4().hex))
        return
    if held != known:
        what = "lost its identity key" if held is None else "holds another identity"
        raise StoreLost(
            f"the state store {what}: it was emptied (restarted without persistence, flushed) "
            f"or is another store, so unsubscribes and caps kept there may be missing; run "
            f"'rapport events replay' on this host (event log {directory})"
        )


def record_store_state(store: FatigueStore, directory: Path) -> str:
    """After a replay: this host's events are in the store; remember its identity."""
    held = store.identity() or store.claim_identity(uuid.uuid4().hex)
    _remember(directory, held)
    return held


def _known(directory: Path) -> str:
    try:
        return (directory / IDENTITY_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def _remember(directory: Path, identity: str) -> None:
    """Write the identity whole (a temporary file renamed over it)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".{IDENTITY_FILE}.{os.getpid()}"
        temporary.write_text(identity + "\n", encoding="utf-8")
        os.replace(temporary, directory / IDENTITY_FILE)
    except OSError:  # an unwritable log directory: the event log's own check says so
        return
