"""Task events back to containerd: containerd 1.6 takes them on its ttrpc address
(TTRPC_ADDRESS in the shim's environment) through ``containerd.services.events.ttrpc.v1.
Events/Forward``, one envelope each (runtime/v2/shim/publisher.go).

A thread sends them, in order, so the loop never waits on containerd; a failed send is
retried (RETRIES times, with a growing pause), as containerd's publisher requeues. With no
address (an engine without containerd) events are dropped."""

import queue
import sys
import threading
import time

from .protocol import message, pack_any

RETRIES = 5
SERVICE, METHOD = "containerd.services.events.ttrpc.v1.Events", "Forward"


class Publisher:
    def __init__(self, address, namespace):
        self.address, self.namespace = address, namespace
        self.queue = queue.Queue()
        self.client = None
        self.thread = None
        if address:
            self.thread = threading.Thread(target=self._run, name="events", daemon=True)
            self.thread.start()

    def publish(self, topic, event):
        if self.thread is not None:
            self.queue.put((topic, event, time.time()))

    def close(self, timeout=5.0):
        """Send what is queued (for at most ``timeout`` seconds), then stop."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(timeout)
        if self.client is not None:
            self.client.close()

    def _run(self):
        from .ttrpc import NAMESPACE_KEY, Client

        while (item := self.queue.get()) is not None:
            topic, event, when = item
            envelope = message("containerd.services.events.ttrpc.v1.ForwardRequest")()
            envelope.envelope.timestamp.FromNanoseconds(int(when * 1e9))
            envelope.envelope.namespace = self.namespace
            envelope.envelope.topic = topic
            envelope.envelope.event.CopyFrom(pack_any(event))
            for attempt in range(RETRIES):
                try:
                    if self.client is None:
                        self.client = Client(self.address)
                    self.client.call(SERVICE, METHOD, envelope, message("google.protobuf.Empty"), timeout=10,
                                     metadata={NAMESPACE_KEY: self.namespace})
                    break
                except Exception as e:  # noqa: BLE001 — retried, then logged: an event must not stop the shim
                    if self.client is not None:
                        self.client.close()
                        self.client = None
                    if attempt == RETRIES - 1:
                        print(f"containerd-shim-ociruntime-v2: event {topic} not delivered: {e}", file=sys.stderr)
                    else:
                        time.sleep(0.1 * (attempt + 1))
