"""Random hex ids from the OS's CSPRNG, read many at a time (decision ids, MIME boundaries)."""

from __future__ import annotations

import os
from collections import deque

#: How many ids' worth of randomness one ``os.urandom`` call reads.
ID_BATCH = 512
_ID_HEX = 20  # 10 random bytes, as ``secrets.token_hex(10)`` gave them
_ids: deque[str] = deque()


def random_hex() -> str:
    """Return 20 hex digits from the OS's CSPRNG, read ``ID_BATCH`` ids at a time.

    One ``os.urandom`` per decision was a syscall per recipient, and it lets go of the GIL, so
    a threaded worker could wait a switch interval to get it back. The ids stay as unguessable
    as before (a forged ``send_failed`` must not name another decision). ``deque.popleft`` is
    atomic, so threads never share one; two threads refilling at once only read more.
    """
    try:
        return _ids.popleft()
    except IndexError:
        text = os.urandom(ID_BATCH * _ID_HEX // 2).hex()
        _ids.extend(text[n : n + _ID_HEX] for n in range(0, len(text), _ID_HEX))
        return _ids.popleft()


# A forked worker must not hand out the ids its parent had read and may hand out too.
os.register_at_fork(after_in_child=_ids.clear)
