"""Run schedules (schedules.py) on a virtual clock, in one process: where the bubble is (MATH A5).

Each rank walks its op list with its own clock t_r, under the executor's semantics:

    FORWARD / BACKWARD   t_r += cost(rank, chunk, micro)          (one chunk's work)
    SEND_*               0 on the sender; the message arrives at t_r + comm_cost
    RECV_*               t_r = max(t_r, arrival of the next message of that (sender, kind))
    STEP                 0

Messages of one (sender, receiver, kind) are matched FIFO, as under MPI, so the timing is a
pure data-flow computation: the order in which this loop visits the ranks does not change it.
A rank that waits for a message nobody will send is a deadlock, reported by rank and op.

    busy_r   = sum of rank r's compute          makespan = max_r t_r
    bubble_r = 1 - busy_r / makespan            (idle share of the step on rank r)

With every stage costing f forward and b backward and comm_cost = 0 (tests/test_pipeline_schedules.py):
GPipe and 1F1B give makespan (M + p - 1)(f + b), bubble (p-1)/(M+p-1) on every rank; naive
M p (f + b), bubble (p-1)/p; interleaved with f/v, b/v per chunk (p-1)/(vM+p-1). Cost: one
pass over every op, O(total ops) apart from the scans for a rank that can move.
"""
from collections import defaultdict, deque

from strategies.pipeline import schedules as S


def _cost_function(cost, name):
    if callable(cost):
        return cost
    if isinstance(cost, (int, float)) and cost >= 0:
        return lambda rank, chunk, micro: float(cost)
    raise ValueError(f"{name} must be a number >= 0 or a callable (rank, chunk, micro), got {cost!r}")


def simulate(schedules, forward_cost=1.0, backward_cost=2.0, comm_cost=0.0):
    """Execute one op list per rank; return events, makespan, busy and bubble per rank."""
    stages = len(schedules)
    if stages < 1:
        raise ValueError("schedules: need at least one rank's op list")
    if not isinstance(comm_cost, (int, float)) or comm_cost < 0:
        raise ValueError(f"comm_cost must be a number >= 0, got {comm_cost!r}")
    cost = {S.FORWARD: _cost_function(forward_cost, "forward_cost"),
            S.BACKWARD: _cost_function(backward_cost, "backward_cost")}
    clock, position = [0.0] * stages, [0] * stages
    events, busy = [[] for _ in range(stages)], [0.0] * stages
    # (sender, receiver, channel) -> deque of (arrival time, (micro-batch, sending stage))
    in_flight = defaultdict(deque)

    def advance(rank):
        """Run ``rank`` until it blocks on a receive or finishes; True if it did anything."""
        ops, moved = schedules[rank], False
        while position[rank] < len(ops):
            op = ops[position[rank]]
            stage = S.virtual_stage(rank, op.chunk, stages)
            if op.kind in (S.FORWARD, S.BACKWARD):
                start = clock[rank]
                clock[rank] += cost[op.kind](rank, op.chunk, op.micro)
                busy[rank] += clock[rank] - start
                events[rank].append((op.kind, op.micro, op.chunk, start, clock[rank]))
            elif op.kind in (S.SEND_ACTIVATION, S.SEND_GRADIENT):
                channel = (rank, S.peer(rank, op, stages), S.CHANNEL[op.kind])
                in_flight[channel].append((clock[rank] + comm_cost, (op.micro, stage)))
            elif op.kind in (S.RECV_ACTIVATION, S.RECV_GRADIENT):
                queue = in_flight[S.peer(rank, op, stages), rank, S.CHANNEL[op.kind]]
                if not queue:
                    return moved               # blocked: the send has not happened yet
                arrival, message = queue.popleft()
                source = stage - 1 if op.kind == S.RECV_ACTIVATION else stage + 1
                if message != (op.micro, source):
                    # FIFO handed this receive another micro-batch's tensor: a schedule bug
                    raise RuntimeError(f"rank {rank}, op {position[rank]} {op} received "
                                       f"(micro-batch, stage) {message}, expected {(op.micro, source)}")
                clock[rank] = max(clock[rank], arrival)
            elif op.kind != S.STEP:
                raise ValueError(f"rank {rank}, op {position[rank]} {op}: unknown kind {op.kind!r}")
            position[rank] += 1
            moved = True
        return moved

    while any(position[r] < len(schedules[r]) for r in range(stages)):
        if not any([advance(rank) for rank in range(stages)]):    # a list: visit every rank
            stuck = [f"rank {r} at op {position[r]} {schedules[r][position[r]]}"
                     for r in range(stages) if position[r] < len(schedules[r])]
            raise RuntimeError("deadlock: no rank can progress; " + "; ".join(stuck))
    unreceived = {channel: len(queue) for channel, queue in in_flight.items() if queue}
    if unreceived:
        # the executor's STEP would wait forever on these isends
        raise RuntimeError(f"sends never received, (sender, receiver, kind): count {unreceived}")
    makespan = max(clock)
    bubble = [1.0 - b / makespan if makespan > 0 else 0.0 for b in busy]
    return {"events": events, "makespan": makespan, "busy": busy, "bubble": bubble}
