"""The shim's event loop (ociruntime_shim.loop): fds, timers, call_soon from threads, signals
run as callbacks in the loop, and a failing callback that doesn't stop it."""

import os
import signal
import socket
import threading
import time

import pytest
from ociruntime_shim.loop import Loop


@pytest.fixture
def loop():
    loop = Loop()
    yield loop
    loop.close()


def run_until(loop, seconds):
    """Run the loop here; a timer stops it after ``seconds`` should nothing else."""
    guard = loop.call_later(seconds, loop.stop)
    loop.run()
    guard.cancel()


def test_timers_run_in_order_and_cancelled_ones_never(loop):
    ran = []
    loop.call_later(0.03, lambda: ran.append("c"))
    loop.call_later(0.01, lambda: ran.append("a"))
    cancelled = loop.call_later(0.02, lambda: ran.append("never"))
    loop.call_later(0.02, lambda: ran.append("b"))
    cancelled.cancel()
    loop.call_later(0.05, loop.stop)
    start = time.monotonic()
    loop.run()
    assert ran == ["a", "b", "c"]
    assert 0.05 <= time.monotonic() - start < 1


def test_call_soon_runs_in_order_and_from_other_threads(loop):
    """A call_soon from another thread wakes a loop waiting on nothing else."""
    ran = []
    loop.call_soon(lambda: ran.append(1))
    loop.call_soon(lambda: ran.append(2))

    def other():
        time.sleep(0.1)
        loop.call_soon(lambda: ran.append(threading.get_ident()))
        loop.call_soon(loop.stop)

    thread = threading.Thread(target=other)
    thread.start()
    start = time.monotonic()
    loop.run()  # no timer: only the wake-up can end this
    thread.join()
    assert ran == [1, 2, threading.get_ident()]
    assert time.monotonic() - start < 5


def test_readers_and_writers(loop):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        got = []

        def on_readable():
            got.append(a.recv(100))
            if got[-1] == b"two":
                loop.remove_reader(a.fileno())
                loop.stop()

        def on_writable():  # the socket is writable at once: one write, then no more
            b.send(b"one" if not got else b"two")
            loop.remove_writer(b.fileno())

        loop.add_reader(a.fileno(), on_readable)
        loop.add_writer(b.fileno(), on_writable)
        loop.call_later(0.05, lambda: loop.add_writer(b.fileno(), on_writable))
        run_until(loop, 5)
        assert got == [b"one", b"two"]
        # the reader was removed: data now waits unread
        b.send(b"three")
        run_until(loop, 0.05)
        assert got == [b"one", b"two"]
        # reader and writer on one fd, each removed on its own
        loop.add_reader(a.fileno(), lambda: got.append(a.recv(100)))
        loop.add_writer(a.fileno(), lambda: loop.remove_writer(a.fileno()))
        run_until(loop, 0.05)
        assert got[-1] == b"three"


def test_a_failing_callback_is_logged_and_the_loop_goes_on(loop, capfd):
    ran = []

    def boom():
        raise RuntimeError("callback broke")

    loop.call_soon(boom)
    loop.call_soon(lambda: ran.append("after"))
    loop.call_later(0.01, loop.stop)
    loop.run()
    assert ran == ["after"]
    err = capfd.readouterr().err
    assert "ociruntime_shim: loop callback" in err and "RuntimeError: callback broke" in err
    assert "Traceback" in err


def test_signals_run_their_callback_in_the_loop(loop):
    """The handler runs in the loop's round, not inside the signal handler: here it sees the
    timer's effects and can stop the loop. Signals sent together may run it once."""
    seen = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: seen.append(("USR1", threading.get_ident())))
    loop.add_signal_handler(signal.SIGUSR2, loop.stop)
    loop.call_later(0.01, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    loop.call_later(0.05, lambda: os.kill(os.getpid(), signal.SIGUSR2))
    guard = loop.call_later(5, loop.stop)
    loop.run()
    guard.cancel()
    assert seen == [("USR1", threading.get_ident())]


def test_close_restores_the_signal_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    loop = Loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) is not before
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) is before
    assert signal.set_wakeup_fd(-1) == -1  # none was left installed
