"""The event stream through the real bus and ZeroMQ server: one seq order, snapshots in their place,
no socket per publishing thread, and text that reaches clients whatever it holds."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from a4ps.backend.server import ZmqServer
from a4ps.client import EventSubscriber
from a4ps.events import EventBus
from a4ps.events.bus import BusLogHandler
from tests.support.config import free_port


class Stream:
    """A bus wired to a real ZmqServer on loopback, and a subscriber whose join snapshot arrived."""

    def __init__(self, snapshot=lambda: {"hello": True}):
        self.bus = EventBus()
        self.server = ZmqServer(f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", 1 << 20,
                                handler=lambda request: {}, snapshot=snapshot)
        self.server.start()
        self.bus.subscribe("*", self.server.publish)
        self.events = EventSubscriber(self.server.pub_addr)
        self.join = self.events.wait_for("state", 10)
        assert self.join is not None, "no join snapshot"

    def collect(self, count: int, timeout_s: float = 30) -> list[tuple[str, dict]]:
        received = []
        while len(received) < count:
            item = self.events.poll_event(timeout_s)
            assert item is not None, f"only {len(received)} of {count} events arrived"
            received.append(item)
        return received

    def close(self) -> None:
        self.events.close()
        self.server.stop()


@pytest.fixture
def stream():
    made = Stream()
    yield made
    made.close()


def test_concurrent_publishers_arrive_in_seq_order(stream):
    threads, per_thread = 8, 400
    start = threading.Barrier(threads)

    def publish(worker: int) -> None:
        start.wait()
        for i in range(per_thread):
            stream.bus.publish("token", worker=worker, i=i, text="x")

    workers = [threading.Thread(target=publish, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    events = [event for _, event in stream.collect(threads * per_thread)]
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(stream.join["seq"] + 1, stream.join["seq"] + 1 + threads * per_thread))
    for n in range(threads):  # and each thread's own order is kept
        assert [e["i"] for e in events if e["worker"] == n] == list(range(per_thread))


def test_publishing_threads_leave_no_sockets_behind(stream):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    stream.bus.publish("log", message="warm up")
    stream.collect(1)
    before = open_fds()
    for n in range(40):
        thread = threading.Thread(target=stream.bus.publish, args=("log",), kwargs={"message": str(n)})
        thread.start()
        thread.join()
    assert len(stream.collect(40)) == 40
    assert open_fds() - before < 5, "each publishing thread left a socket (and its file descriptors) open"


def test_a_snapshot_reflects_every_event_before_it():
    counter, lock = {"n": 0}, threading.Lock()

    def snapshot():
        with lock:
            return {"n": counter["n"]}

    stream = Stream(snapshot)
    try:
        def tick():
            for _ in range(3000):
                with lock:
                    counter["n"] += 1
                    n = counter["n"]
                stream.bus.publish("tick", n=n)  # published after the change, as the backend does

        ticker = threading.Thread(target=tick)
        ticker.start()
        for _ in range(50):
            stream.server.publish_snapshot()
        ticker.join()
        newest, snapshots = 0, 0
        for topic, event in stream.collect(3000 + 50):
            if topic == "tick":
                newest = max(newest, event["n"])
            else:
                snapshots += 1
                assert event["snapshot"]["n"] >= newest, "a snapshot older than an event sent before it"
        assert snapshots == 50
    finally:
        stream.close()


def test_an_emoji_reaches_the_subscriber(stream):
    """The wire carries any text: an emoji as such, and the halves of a surrogate pair (what a
    streamer decoding JSON \\u escapes one at a time produces) joined again or, alone, replaced."""
    stream.bus.publish("token", text="Bats 🦇 at dusk")
    stream.bus.publish("token", text="pair \ud83e\udd87 joined")
    stream.bus.publish("token", text="half \ud83e")
    stream.bus.publish("utterance", text="after", data={"answer": "🦇", "list": ["\udd87"]})
    events = [event for _, event in stream.collect(4)]
    assert [e["text"] for e in events] == ["Bats 🦇 at dusk", "pair 🦇 joined", "half \ufffd", "after"]
    assert events[3]["data"] == {"answer": "🦇", "list": ["\ufffd"]}
    assert [e["seq"] for e in events] == list(range(stream.join["seq"] + 1, stream.join["seq"] + 5)), "no gap"


def test_a_repair_is_logged_as_an_event_without_deadlock(stream):
    """As in the backend, log records are events: the repair's own log line must get through."""
    handler = BusLogHandler(stream.bus, logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        publisher = threading.Thread(target=stream.bus.publish, args=("token",), kwargs={"text": "half \ud83e"},
                                     daemon=True)  # a deadlocked publisher must not hang the test run
        publisher.start()
        publisher.join(5)
        assert not publisher.is_alive(), "publishing deadlocked on its own log record"
    finally:
        logging.getLogger().removeHandler(handler)
    received = dict((topic, event) for topic, event in stream.collect(2))
    assert received["token"]["text"] == "half \ufffd" and "repaired" in received["log"]["message"]
