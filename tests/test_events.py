"""EventBus: listeners get events in order; a failing listener never breaks the publisher."""

from __future__ import annotations

import threading

from a4ps.events import EventBus


def test_topic_and_wildcard_listeners_and_failures():
    bus, seen = EventBus(), []
    bus.subscribe("task", lambda e: seen.append(("task", e.payload["n"])))
    bus.subscribe("task", lambda e: 1 / 0)
    bus.subscribe("*", lambda e: seen.append(("*", e.topic)))
    event = bus.publish("task", n=1)
    bus.publish("other", n=2)
    assert seen == [("task", 1), ("*", "task"), ("*", "other")]
    assert event.as_map()["topic"] == "task" and event.as_map()["n"] == 1


def test_unsubscribe():
    bus, seen = EventBus(), []
    stop = bus.subscribe("x", lambda e: seen.append(e.seq))
    bus.publish("x")
    stop()
    bus.publish("x")
    assert len(seen) == 1


def test_sequence_numbers_unique_across_threads():
    bus, seqs, lock = EventBus(), [], threading.Lock()

    def listener(event):
        with lock:
            seqs.append(event.seq)

    bus.subscribe("*", listener)
    threads = [threading.Thread(target=lambda: [bus.publish("t") for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 2001))
