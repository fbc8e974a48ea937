"""The stop request a part can wait on in poll(2) beside its own descriptors."""

from __future__ import annotations

import select
import threading

from wuye.core.stop import Stop


def readable(stop: Stop) -> bool:
    waiting = select.poll()
    waiting.register(stop, select.POLLIN)
    return bool(waiting.poll(0))


def test_the_descriptor_turns_readable_when_the_stop_is_set_and_stays_so() -> None:
    stop = Stop()
    assert not readable(stop) and not stop.is_set()
    stop.set()
    stop.set()  # a second request changes nothing
    assert stop.is_set() and readable(stop) and readable(stop)


def test_a_poll_without_a_timeout_returns_when_another_thread_sets_the_stop() -> None:
    stop = Stop()
    waiting = select.poll()
    waiting.register(stop, select.POLLIN)
    setter = threading.Thread(target=stop.set)
    setter.start()
    assert waiting.poll() == [(stop.fileno(), select.POLLIN)]
    setter.join()
