"""The stop request of a process's parts (its SIGTERM, or a part beside them that failed)."""

from __future__ import annotations

import os
import threading
import weakref


class Stop(threading.Event):
    """A threading.Event whose `set` also makes a descriptor readable, so a part that sleeps in
    poll(2) on a socket or an inotify watch can wait on the stop request in the same call: it
    sleeps until there is something to do, instead of waking a few times a second to look."""

    def __init__(self) -> None:
        super().__init__()
        self._descriptor = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        weakref.finalize(self, os.close, self._descriptor)

    def fileno(self) -> int:
        """Readable once the stop is requested (and from then on: nobody reads it)."""
        return self._descriptor

    def set(self) -> None:
        super().set()
        os.eventfd_write(self._descriptor, 1)
