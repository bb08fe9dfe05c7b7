"""The shim's one event loop: file descriptors, timers and signals on ``selectors``.

Not asyncio: the shim stays up beside every container, so its import time and memory
count, and it needs only this much. Callbacks take no arguments (close over what they
need) and run one at a time in the loop's thread; one that raises is reported on stderr
and the loop goes on.
"""

import heapq
import os
import selectors
import signal
import sys
import threading
import time
from collections import deque

_WAKE = 0  # the byte call_soon writes to the wake pipe; signal.set_wakeup_fd writes signal numbers


class Handle:
    """A callback scheduled by ``call_later``; ``cancel()`` keeps it from running."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when, callback):
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self):
        self.cancelled = True

    def __lt__(self, other):  # for the timer heap: the earlier first
        return self.when < other.when


class Loop:
    def __init__(self):
        self._selector = selectors.DefaultSelector()
        self._ready = deque()
        self._timers = []
        self._signals = {}
        self._stopping = False
        self._thread = None  # the thread in run(): call_soon from any other wakes it
        # The wake pipe: call_soon from another thread, and signals (set_wakeup_fd), write a
        # byte to it so that a select() waiting for something else returns.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, (self._drain_wake_pipe, None))
        self._old_wakeup_fd = None

    def add_reader(self, fd, callback):
        self._set(fd, 0, callback)

    def remove_reader(self, fd):
        self._set(fd, 0, None)

    def add_writer(self, fd, callback):
        self._set(fd, 1, callback)

    def remove_writer(self, fd):
        self._set(fd, 1, None)

    def call_soon(self, callback):
        """Run ``callback`` in the loop's next round. Safe from any thread (a thread that
        has a result for the loop hands it over this way)."""
        self._ready.append(callback)
        if self._thread is not None and threading.get_ident() != self._thread:
            try:
                os.write(self._wake_w, bytes((_WAKE,)))
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def call_later(self, seconds, callback):
        """Run ``callback`` in ``seconds`` (on the monotonic clock); a Handle to cancel it.
        From the loop's thread only."""
        handle = Handle(time.monotonic() + seconds, callback)
        heapq.heappush(self._timers, handle)
        return handle

    def add_signal_handler(self, signum, callback):
        """Run ``callback`` in the loop when ``signum`` arrives, not in the signal handler:
        Python's C handler writes the number to the wake pipe (signal.set_wakeup_fd), the
        loop reads it. Signals that arrive between two reads run their callback once, as the
        kernel merges pending signals anyway. From the main thread (Python's rule for signals)."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._signals[signum] = (callback, signal.signal(signum, _note_signal))

    def stop(self):
        """Make run() return after the callbacks of this round."""
        self._stopping = True
        self.call_soon(_nothing)  # wakes a select() in the loop's thread when stopped from another

    def run(self):
        """Wait for and run callbacks until stop()."""
        self._stopping = False
        self._thread = threading.get_ident()
        try:
            while not self._stopping:
                self._run_once()
        finally:
            self._thread = None

    def close(self):
        """Give back the pipe, the selector and the signal handlers (the loop is not running)."""
        for signum, (_, previous) in self._signals.items():
            signal.signal(signum, previous)
        self._signals.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _set(self, fd, which, callback):
        """Set (or with None clear) ``fd``'s reader (which=0) or writer (1) callback."""
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            if callback is None:
                return
            callbacks = [None, None]
            callbacks[which] = callback
            self._selector.register(fd, selectors.EVENT_READ if which == 0 else selectors.EVENT_WRITE, callbacks)
            return
        callbacks = list(key.data)
        callbacks[which] = callback
        events = (selectors.EVENT_READ if callbacks[0] else 0) | (selectors.EVENT_WRITE if callbacks[1] else 0)
        if events:
            self._selector.modify(fd, events, callbacks)
        else:
            self._selector.unregister(fd)

    def _run_once(self):
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if self._ready:
            timeout = 0
        elif self._timers:
            timeout = max(0, self._timers[0].when - time.monotonic())
        else:
            timeout = None
        for key, events in self._selector.select(timeout):
            # Each callback is looked up as it runs: one before it may have removed it. (Or
            # closed its fd, whose number a new one then took: callbacks must take a spurious
            # wake-up, a BlockingIOError, in their stride.)
            if events & selectors.EVENT_READ:
                self._run_callback(key.fd, 0)
            if events & selectors.EVENT_WRITE:
                self._run_callback(key.fd, 1)
        now = time.monotonic()
        while self._timers and self._timers[0].when <= now:
            handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self._ready.append(handle.callback)
        for _ in range(len(self._ready)):  # those of this round: one added meanwhile waits for the next
            _run(self._ready.popleft())

    def _run_callback(self, fd, which):
        try:
            callback = self._selector.get_key(fd).data[which]
        except KeyError:
            return
        if callback is not None:
            _run(callback)

    def _drain_wake_pipe(self):
        try:
            data = os.read(self._wake_r, 4096)
        except BlockingIOError:
            return
        for signum in set(data) - {_WAKE}:
            entry = self._signals.get(signum)
            if entry:
                self._ready.append(entry[0])


def log(message):
    """One line on stderr: the shim makes it its log (containerd copies the bundle's log fifo
    to its own output)."""
    print(f"ociruntime_shim: {message}", file=sys.stderr, flush=True)


def log_exception(what):
    """The exception being handled, with its traceback, as the failure of ``what``."""
    import traceback

    log(f"{what} failed:\n{traceback.format_exc().rstrip()}")


def _run(callback):
    try:
        callback()
    except Exception:
        log_exception(f"loop callback {callback!r}")


def _note_signal(signum, frame):
    """The Python-level handler: nothing to do, Python's C handler has written to the wake pipe."""


def _nothing():
    pass
