"""What each rank spent its time on: totals per kind, and the first events for a Gantt chart.

    timeline = Timeline()
    with timeline.span("push"):          # or timeline.add("compute", start, end)
        ...
    timeline.totals    {"push": 0.12, ...}            seconds, every event counted
    timeline.events    [["push", t0, t1], ...]        the first LIMIT events, time.time() stamps

Kinds: compute (forward + backward, a straggler's sleep included), push (sending or
receiving a gradient), wait (blocked until a header arrives: a worker for its reply, a server
for the next push), pull (receiving or sending theta), apply (a server's optimiser step).
Stamps are wall-clock ``time.time()`` so that ranks in different processes of one machine
share an origin; the record subtracts the earliest rank's start (report.py).
"""
import time
from contextlib import contextmanager

LIMIT = 200   # events kept per rank: enough to draw a few steps, bounded for long runs

KINDS = ("compute", "push", "wait", "pull", "apply")


class Timeline:
    """Per-kind totals (all events) and the first ``limit`` events of one rank."""

    def __init__(self, limit=LIMIT):
        self.origin = time.time()
        self.limit = limit
        self.totals = {kind: 0.0 for kind in KINDS}
        self.events = []

    def add(self, kind, start, end):
        """Record that this rank did ``kind`` from ``start`` to ``end`` (time.time() seconds)."""
        self.totals[kind] += end - start
        if len(self.events) < self.limit:
            self.events.append([kind, start, end])

    @contextmanager
    def span(self, kind):
        start = time.time()
        try:
            yield
        finally:
            self.add(kind, start, time.time())
