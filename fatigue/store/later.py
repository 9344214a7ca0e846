"""An answer asked of a store now and read later, so the store works while the caller does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Later(Generic[T]):
    """A store's answer on its way: read it with ``result``, or give it up with ``cancel``.

    ``result`` reads once (later calls give the same answer or error again); ``cancel`` leaves
    the store's connection clean. Whoever asks must do one or the other: an unread answer holds
    a connection until then. ``cancel`` after ``result`` does nothing; ``result`` after
    ``cancel`` raises.
    """

    __slots__ = ("_cancel", "_done", "_error", "_read", "_value")

    def __init__(self, read: Callable[[], T], cancel: Callable[[], None] | None = None) -> None:
        self._read = read
        self._cancel = cancel
        self._value: T | None = None
        self._error: BaseException | None = None
        self._done = False

    @classmethod
    def now(cls, work: Callable[[], T]) -> Later[T]:
        """Do ``work`` at once; its answer, or the error it raised, is what ``result`` gives."""
        try:
            value = work()
        except Exception as exc:  # raised again from result(), where the caller expects it
            return cls.failed(exc)
        return cls(lambda: value)

    @classmethod
    def failed(cls, error: BaseException) -> Later[T]:
        """Return an answer that is ``error``, raised from ``result``."""

        def fail() -> T:
            raise error

        return cls(fail)

    def result(self) -> T:
        """Return the answer, read on the first call; raise the error reading it raised."""
        if not self._done:
            self._done = True
            try:
                self._value = self._read()
            except BaseException as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set once read without an error

    def cancel(self) -> None:
        """Give the answer up unread (nothing happens once it has been read)."""
        if self._done:
            return
        self._done = True
        self._error = RuntimeError("the store's answer was cancelled before it was read")
        if self._cancel is not None:
            self._cancel()
