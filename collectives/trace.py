"""Make communication visible: an opt-in record of every message a rank sends or receives.

    comm.trace = Trace()            # start recording on this rank
    ring_allreduce(comm, x)
    comm.trace.events               # [Event(rank=0, kind='send', peer=1, nbytes=24,
                                    #   note=Note('reduce-scatter', 0, chunk_sent=3, ...)), ...]
    comm.trace = Trace(echo=True)   # also print every message: "rank 0 -> 1 ..." (picotron's
                                    # VERBOSE switch)

The algorithms label their messages with a ``comm.Note`` (phase, step, chunk indices), so the
tutorial and the notebook can redraw the ring step by step from the events alone.
"""
from dataclasses import dataclass, field

from collectives.comm import Note


@dataclass(frozen=True)
class Event:
    rank: int
    kind: str      # "send" or "recv"
    peer: int      # the rank at the other end
    nbytes: int
    note: Note | None


@dataclass
class Trace:
    """The events of one rank, in the order they were issued."""

    echo: bool = False
    events: list = field(default_factory=list)

    def record(self, rank, kind, peer, nbytes, note):
        event = Event(rank, kind, peer, nbytes, note)
        self.events.append(event)
        if self.echo:
            print(describe(event), flush=True)

    def steps(self):
        """{(phase, step): (chunk_sent, chunk_received)} from this rank's labelled sendrecvs."""
        table = {}
        for event in self.events:
            if event.note is not None and event.kind == "send":
                table[(event.note.phase, event.note.step)] = (event.note.chunk_sent,
                                                             event.note.chunk_received)
        return table


def describe(event):
    arrow = "->" if event.kind == "send" else "<-"
    text = f"rank {event.rank} {arrow} {event.peer}  {event.nbytes:>10,d} B"
    if event.note is not None:
        text += f"  {event.note.phase} step {event.note.step}"
        chunk = event.note.chunk_sent if event.kind == "send" else event.note.chunk_received
        if chunk is not None:
            text += f" chunk {chunk}"
    return text


def step_table(traces):
    """Lines of text: one row per (phase, step), one column per rank, "sends c -> / got c'".

    ``traces`` is the list of every rank's Trace (index = rank), e.g. returned by spawn or
    gathered to rank 0 under mpirun.
    """
    rows = sorted({key for trace in traces for key in trace.steps()},
                  key=lambda key: (key[0] != "reduce-scatter", key[1]))
    width = 16
    lines = [f"{'phase':<15}{'step':>5}  " + "".join(f"{'rank ' + str(r):<{width}}"
                                                   for r in range(len(traces)))]
    for phase, step in rows:
        cells = []
        for trace in traces:
            sent, received = trace.steps().get((phase, step), (None, None))
            cells.append(f"{'-' if sent is None else f'c{sent}->  <-c{received}':<{width}}")
        lines.append(f"{phase:<15}{step:>5}  " + "".join(cells))
    return lines
