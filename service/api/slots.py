"""Bounded concurrency of uploads and imports: slots taken at once, refused when all are.

An API process receives at most ``max_concurrent_uploads`` upload bodies at once and
imports (or validates) at most ``max_concurrent_imports`` of the received files at once:
a model import runs a sandboxed child process of a few hundred MB, so fifteen at once
exhaust a small machine. One upload more than the slots allow is answered 503 ``busy``
with ``Retry-After`` before its body is read; a received file waits a bounded time
(``import_wait_s``) for an import slot, then is answered the same way. ``/readyz``
reports a process whose upload slots are all taken as not ready.

The slots live on ``app.state.limits`` and are taken on the event loop, which is what
keeps the counts exact without a lock; threads only read them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.errors import BusyError
from service.settings import Settings

__all__ = ["Limits", "Slots"]


class Slots:
    """``size`` slots of one kind (``what``: "upload", "import"), taken and given back.

    Attributes:
        size: how many may be taken at once.
        what: what a slot is for, as the busy message names it.
        taken: how many are taken now.
    """

    def __init__(self, size: int, *, what: str, retry_after_s: int) -> None:
        self.size, self.what, self.taken = size, what, 0
        self._retry_after_s = retry_after_s
        self._free = asyncio.Semaphore(size)

    @property
    def full(self) -> bool:
        """Whether every slot is taken (the next one would wait or be refused)."""
        return self.taken >= self.size

    @asynccontextmanager
    async def take(self, *, wait_s: float = 0.0) -> AsyncIterator[None]:
        """Hold one slot for the ``async with`` block.

        Args:
            wait_s: how long to wait for a slot when all are taken; 0 refuses at once.

        Raises:
            BusyError: no slot came free within ``wait_s``.
        """
        if self._free.locked() and wait_s <= 0:
            raise self._busy()
        try:
            async with asyncio.timeout(wait_s if self._free.locked() else None):
                await self._free.acquire()
        except TimeoutError:
            raise self._busy() from None
        self.taken += 1
        try:
            yield
        finally:
            self.taken -= 1
            self._free.release()

    def _busy(self) -> BusyError:
        return BusyError(
            f"the service is busy: all {self.size} {self.what} slots are taken; "
            f"retry in {self._retry_after_s} s",
            retry_after_s=self._retry_after_s,
        )


@dataclass(frozen=True)
class Limits:
    """The slots of one API process, sized from its settings."""

    uploads: Slots
    imports: Slots

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """``max_concurrent_uploads`` upload and ``max_concurrent_imports`` import slots."""
        retry = settings.busy_retry_after_s
        return cls(
            uploads=Slots(settings.max_concurrent_uploads, what="upload", retry_after_s=retry),
            imports=Slots(settings.max_concurrent_imports, what="import", retry_after_s=retry),
        )
