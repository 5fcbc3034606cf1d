"""Pipeline schedules as data: for each of p ranks, the ordered ops of one step (MATH A4, A5).

The model is cut into V = v p virtual stages; stage s lives on rank s mod p as its chunk
s div p (Megatron's layout, ``virtual_stage``), so with v = 1 rank r is stage r. A batch is cut
into M micro-batches. Stage 0 reads the data, stage V - 1 computes the loss in its FORWARD:

    RECV_ACTIVATION m   before FORWARD m    (s > 0: from the rank of s - 1)
    SEND_ACTIVATION m   after  FORWARD m    (s < V - 1: to the rank of s + 1)
    RECV_GRADIENT m     before BACKWARD m   (s < V - 1: from the rank of s + 1)
    SEND_GRADIENT m     after  BACKWARD m   (s > 0: to the rank of s - 1)
    STEP                last, once          (the optimiser, after every backward)

Sends are non-blocking, receives block, and the messages of one (sender, receiver, kind) are
matched in FIFO order, so ``check`` demands that the receiver's RECV order equal the sender's
SEND order. Receives sit right before the compute that needs them: a rank waits as late as it
can. What differs between schedules is only the order of the compute ops on each rank:

    naive        F(m) B(m) for m = 0..M-1: one micro-batch in flight; bubble (p-1)/p
    gpipe        F(0..M-1) then B(0..M-1), backwards in forward order (FIFO, like 1F1B's);
                 bubble (p-1)/(M+p-1) (A5); stash M
    1f1b         PipeDream-flush: w = min(p-r-1, M) warm-up forwards, then F(w+i) B(i), then the
                 cool-down backwards; same bubble as GPipe, stash min(M, p-r)
    interleaved  Megatron's interleaved 1F1B on v >= 2 chunks, M a multiple of p: unit k of
                 v M runs micro-batch (k div pv) p + (k mod p) on chunk (k mod pv) div p
                 (backwards: on chunk v-1 minus that); warm-up w_r = 2(p-r-1) + (v-1)p units
                 (all v M when M = p), then 1F1B on units. Per-chunk costs f/v, b/v give
                 bubble (p-1)/(vM+p-1): the fill shrinks v-fold. Stash, in units of one chunk's
                 activations (1/v of a stage's): min(w_r + 1, v M) (v M when M = p).
                 With chunks = 1 'interleaved' is '1f1b' (what Megatron runs without chunks).

Costs, per step: compute M (f + b) per rank for every schedule; a message per stage boundary
and micro-batch each way, 2 (V - 1) M in all.
"""
from collections import defaultdict
from dataclasses import dataclass

FORWARD, BACKWARD = "forward", "backward"
RECV_ACTIVATION, SEND_ACTIVATION = "recv_activation", "send_activation"
RECV_GRADIENT, SEND_GRADIENT = "recv_gradient", "send_gradient"
STEP = "step"
KINDS = (FORWARD, BACKWARD, RECV_ACTIVATION, SEND_ACTIVATION, RECV_GRADIENT, SEND_GRADIENT, STEP)

SCHEDULES = ("naive", "gpipe", "1f1b", "interleaved")

# the message channel of a send or receive: activations and gradients match FIFO separately
CHANNEL = {SEND_ACTIVATION: "activation", RECV_ACTIVATION: "activation",
           SEND_GRADIENT: "gradient", RECV_GRADIENT: "gradient"}


@dataclass(frozen=True)
class Op:
    kind: str        # one of KINDS
    micro: int       # micro-batch m in 0..M-1 (-1 for STEP)
    chunk: int = 0   # which of this rank's v model chunks (interleaved); 0 otherwise


def virtual_stage(rank, chunk, stages):
    """Megatron's layout: chunk c of rank r is virtual stage c p + r."""
    return chunk * stages + rank


def peer(rank, op, stages):
    """The rank that the message of send/receive ``op`` on ``rank`` goes to or comes from."""
    s = virtual_stage(rank, op.chunk, stages)
    toward_loss = op.kind in (SEND_ACTIVATION, RECV_GRADIENT)    # talks to stage s + 1
    return (s + 1 if toward_loss else s - 1) % stages


def _validate(name, stages, micro_batches, chunks):
    if name not in SCHEDULES:
        raise ValueError(f"name: unknown schedule {name!r}, expected one of {SCHEDULES}")
    for arg, value in (("stages", stages), ("micro_batches", micro_batches), ("chunks", chunks)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be an integer >= 1, got {value!r}")
    if name != "interleaved" and chunks != 1:
        raise ValueError(f"chunks must be 1 for schedule {name!r} (only 'interleaved' has "
                         f"model chunks), got {chunks}")
    if name == "interleaved" and chunks > 1 and micro_batches % stages:
        raise ValueError(f"micro_batches ({micro_batches}) must be a multiple of stages "
                         f"({stages}) for 'interleaved' (Megatron's groups of p)")


def _interleaved_warmup(stages, micro_batches, rank, chunks):
    if micro_batches == stages:    # Megatron: all forwards, then all backwards
        return chunks * micro_batches
    return min(2 * (stages - rank - 1) + (chunks - 1) * stages, chunks * micro_batches)


def _compute_order(name, stages, micro_batches, rank, chunks):
    """The FORWARD/BACKWARD ops of ``rank`` in the order the schedule runs them."""
    p, M = stages, micro_batches
    F = lambda m, c=0: Op(FORWARD, m, c)      # noqa: E731  (one letter each: reads like the docs)
    B = lambda m, c=0: Op(BACKWARD, m, c)     # noqa: E731
    if name == "naive":
        return [op for m in range(M) for op in (F(m), B(m))]
    if name == "gpipe":
        return [F(m) for m in range(M)] + [B(m) for m in range(M)]
    if name == "1f1b" or chunks == 1:
        warmup = min(p - rank - 1, M)
        steady = [op for i in range(M - warmup) for op in (F(warmup + i), B(i))]
        return [F(m) for m in range(warmup)] + steady + [B(m) for m in range(M - warmup, M)]

    v, units = chunks, chunks * M

    def unit(k, forward):    # Megatron's get_model_chunk_id and micro-batch id of unit k
        group, within = divmod(k, p * v)
        chunk, micro = within // p, group * p + within % p
        return F(micro, chunk) if forward else B(micro, v - 1 - chunk)

    warmup = _interleaved_warmup(p, M, rank, v)
    steady = [op for i in range(units - warmup) for op in (unit(warmup + i, True), unit(i, False))]
    return ([unit(k, True) for k in range(warmup)] + steady
            + [unit(k, False) for k in range(units - warmup, units)])


def _with_messages(compute, rank, stages, chunks):
    """Wrap each compute op in the receive before it and the send after it (module docstring)."""
    last = chunks * stages - 1
    ops = []
    for op in compute:
        s = virtual_stage(rank, op.chunk, stages)
        if op.kind == FORWARD:
            before, after = (RECV_ACTIVATION, s > 0), (SEND_ACTIVATION, s < last)
        else:
            before, after = (RECV_GRADIENT, s < last), (SEND_GRADIENT, s > 0)
        ops += [Op(before[0], op.micro, op.chunk)] * before[1] + [op]
        ops += [Op(after[0], op.micro, op.chunk)] * after[1]
    return ops + [Op(STEP, -1)]


def build(name, stages, micro_batches, chunks=1):
    """One ordered list of Ops per rank (pipeline rank r = 0..stages-1)."""
    _validate(name, stages, micro_batches, chunks)
    return [_with_messages(_compute_order(name, stages, micro_batches, r, chunks), r, stages, chunks)
            for r in range(stages)]


def stash_peak(ops):
    """Most (forwards done - backwards done) at once in one rank's list: activations stashed."""
    held = peak = 0
    for op in ops:
        held += (op.kind == FORWARD) - (op.kind == BACKWARD)
        peak = max(peak, held)
    return peak


def expected_stash_peak(name, stages, micro_batches, rank, chunks=1):
    """The formula for ``stash_peak`` (module docstring): naive 1, GPipe M, 1F1B min(M, p - r);
    interleaved min(w_r + 1, v M) chunk-activations."""
    _validate(name, stages, micro_batches, chunks)
    if not 0 <= rank < stages:
        raise ValueError(f"rank must be in 0..{stages - 1}, got {rank}")
    if name == "naive":
        return 1
    if name == "gpipe":
        return micro_batches
    if name == "1f1b" or chunks == 1:
        return min(micro_batches, stages - rank)
    return min(_interleaved_warmup(stages, micro_batches, rank, chunks) + 1, chunks * micro_batches)


def _fail(rank, index, op, why):
    raise ValueError(f"rank {rank}, op {index} {op}: {why}")


def _check_rank(ops, rank, stages, micro_batches, chunks):
    """One rank's counts and local order: each (m, c) forwarded, then backwarded, once; every
    receive and send where the stage needs it, on the right side of its compute; STEP last."""
    last, seen = chunks * stages - 1, {}
    for i, op in enumerate(ops):
        if op.kind not in KINDS:
            _fail(rank, i, op, f"unknown kind {op.kind!r}")
        if op.kind == STEP:
            if i != len(ops) - 1:
                _fail(rank, i, op, "STEP must be the last op")
            continue
        if not (0 <= op.micro < micro_batches and 0 <= op.chunk < chunks):
            _fail(rank, i, op, f"micro-batch or chunk out of range (M={micro_batches}, v={chunks})")
        key = (op.kind, op.micro, op.chunk)
        if key in seen:
            _fail(rank, i, op, f"repeated (first at op {seen[key]})")
        seen[key] = i
    if not ops or ops[-1].kind != STEP:
        raise ValueError(f"rank {rank}: missing STEP (it must be the last op, exactly once)")
    for m in range(micro_batches):
        for c in range(chunks):
            s = virtual_stage(rank, c, stages)
            # (kind, needed on this stage, the kinds it must come after)
            rules = [(RECV_ACTIVATION, s > 0, ()),
                     (FORWARD, True, (RECV_ACTIVATION,)),
                     (SEND_ACTIVATION, s < last, (FORWARD,)),
                     (RECV_GRADIENT, s < last, ()),
                     (BACKWARD, True, (FORWARD, RECV_GRADIENT)),
                     (SEND_GRADIENT, s > 0, (BACKWARD,))]
            for kind, needed, follows in rules:
                if not needed:
                    if (kind, m, c) in seen:
                        _fail(rank, seen[kind, m, c], Op(kind, m, c), f"virtual stage {s} has no {kind}")
                    continue
                if (kind, m, c) not in seen:
                    raise ValueError(f"rank {rank} (virtual stage {s}), micro-batch {m}, "
                                     f"chunk {c}: missing {kind}")
                i = seen[kind, m, c]
                for earlier in follows:
                    if seen.get((earlier, m, c), -1) > i:
                        _fail(rank, i, Op(kind, m, c), f"{kind} before its {earlier}")


def check(schedules, stages, micro_batches, chunks=1):
    """Raise ValueError naming the rank and op if ``schedules`` breaks the semantics above.
    Structural only: whether the ranks' orders can deadlock is simulator.simulate's to find."""
    if len(schedules) != stages:
        raise ValueError(f"schedules: {len(schedules)} op lists for stages={stages}")
    for rank, ops in enumerate(schedules):
        _check_rank(ops, rank, stages, micro_batches, chunks)
    # FIFO matching: per (sender, receiver, channel), the messages in the order they are sent
    # and the order they are received, each named by (micro-batch, sending virtual stage)
    sent, received = defaultdict(list), defaultdict(list)
    for rank, ops in enumerate(schedules):
        for i, op in enumerate(ops):
            if op.kind not in CHANNEL:
                continue
            s, other = virtual_stage(rank, op.chunk, stages), peer(rank, op, stages)
            if op.kind in (SEND_ACTIVATION, SEND_GRADIENT):
                sent[rank, other, CHANNEL[op.kind]].append(((op.micro, s), rank, i, op))
            else:
                source = s - 1 if op.kind == RECV_ACTIVATION else s + 1
                received[other, rank, CHANNEL[op.kind]].append(((op.micro, source), rank, i, op))
    for pair in sorted(set(sent) | set(received)):
        sends, recvs = sent[pair], received[pair]
        for (message, _, i, op), (wanted, rank, j, recv) in zip(sends, recvs):
            if message != wanted:
                _fail(rank, j, recv, f"receives {pair[2]} (micro-batch, stage) {wanted} from rank "
                      f"{pair[0]}, whose matching send (FIFO) is its op {i} {op}, message {message}")
        if len(sends) != len(recvs):
            raise ValueError(f"ranks {pair[0]} -> {pair[1]}, {pair[2]}: {len(sends)} sends but "
                             f"{len(recvs)} receives")
