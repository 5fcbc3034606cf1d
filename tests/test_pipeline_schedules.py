"""Pipeline schedules as data and their simulator, no MPI (MATH A5).

Every schedule at p = 1..4, M = 1, 2, 4, 8 (interleaved: v = 2, M a multiple of p) passes
check(), has the right op counts and the stash its formula says; the simulated bubbles equal
the closed forms exactly (GPipe and 1F1B (p-1)/(M+p-1), naive (p-1)/p, interleaved
(p-1)/(vM+p-1)); deadlocks, hand-broken schedules and bad arguments fail with their reason.
"""
import math

import pytest

from strategies.pipeline import gantt, schedules as S
from strategies.pipeline.schedules import Op
from strategies.pipeline.simulator import simulate

CASES = [(name, p, M, 1) for name in ("naive", "gpipe", "1f1b") for p in range(1, 5) for M in (1, 2, 4, 8)]
CASES += [("interleaved", p, M, 2) for p in range(1, 5) for M in (1, 2, 4, 8) if M % p == 0]
COSTS = [(1.0, 2.0), (1.0, 1.0), (3.0, 1.0)]     # (forward, backward) per stage


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("name, p, M, v", CASES)
def test_built_schedules_pass_check_and_count_every_op(name, p, M, v):
    schedules = S.build(name, p, M, v)
    S.check(schedules, p, M, v)
    V = v * p
    for rank, ops in enumerate(schedules):
        count = {kind: sum(op.kind == kind for op in ops) for kind in S.KINDS}
        stages = [S.virtual_stage(rank, c, p) for c in range(v)]
        assert count[S.FORWARD] == count[S.BACKWARD] == v * M
        assert count[S.RECV_ACTIVATION] == count[S.SEND_GRADIENT] == M * sum(s > 0 for s in stages)
        assert count[S.SEND_ACTIVATION] == count[S.RECV_GRADIENT] == M * sum(s < V - 1 for s in stages)
        assert count[S.STEP] == 1 and ops[-1] == Op(S.STEP, -1)


@pytest.mark.parametrize("name, p, M, v", CASES)
def test_stash_peak_is_the_formula(name, p, M, v):
    schedules = S.build(name, p, M, v)
    for rank, ops in enumerate(schedules):
        assert S.stash_peak(ops) == S.expected_stash_peak(name, p, M, rank, v)
    if name == "gpipe":
        assert all(S.stash_peak(ops) == M for ops in schedules)
    if name == "1f1b":
        assert [S.stash_peak(ops) for ops in schedules] == [min(M, p - r) for r in range(p)]


@pytest.mark.parametrize("name, p, M, v", CASES)
def test_simulate_never_deadlocks_and_keeps_every_rank_busy_the_same(name, p, M, v):
    result = simulate(S.build(name, p, M, v), 1.0 / v, 2.0 / v)
    assert all(close(busy, 3.0 * M) for busy in result["busy"])    # M (f + b) on every rank
    assert all(len(events) == 2 * v * M for events in result["events"])
    for events in result["events"]:
        assert all(start <= end <= result["makespan"] for _, _, _, start, end in events)
        assert all(a[4] <= b[3] for a, b in zip(events, events[1:]))    # one op at a time


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p", [1, 2, 3, 4])
@pytest.mark.parametrize("M", [1, 2, 4, 8])
@pytest.mark.parametrize("f, b", COSTS)
def test_bubble_of_gpipe_and_1f1b_is_p_minus_1_over_m_plus_p_minus_1(name, p, M, f, b):
    # MATH A5: T = (M + p - 1)(f + b) instead of M p (f + b)
    result = simulate(S.build(name, p, M), f, b)
    assert close(result["makespan"], (M + p - 1) * (f + b))
    assert all(close(bubble, (p - 1) / (M + p - 1)) for bubble in result["bubble"])


@pytest.mark.parametrize("p", [1, 2, 3, 4])
@pytest.mark.parametrize("M", [1, 2, 4])
@pytest.mark.parametrize("f, b", COSTS)
def test_bubble_of_naive_is_p_minus_1_over_p(p, M, f, b):
    result = simulate(S.build("naive", p, M), f, b)
    assert close(result["makespan"], M * p * (f + b))
    assert all(close(bubble, (p - 1) / p) for bubble in result["bubble"])


@pytest.mark.parametrize("p", [2, 4])
@pytest.mark.parametrize("multiple", [1, 2, 4])
@pytest.mark.parametrize("v", [2, 4])
@pytest.mark.parametrize("f, b", COSTS)
def test_bubble_of_interleaved_is_p_minus_1_over_vm_plus_p_minus_1(p, multiple, v, f, b):
    M = multiple * p
    result = simulate(S.build("interleaved", p, M, v), f / v, b / v)    # a chunk is 1/v of a stage
    assert close(result["makespan"], M * (f + b) + (p - 1) * (f + b) / v)
    assert all(close(bubble, (p - 1) / (v * M + p - 1)) for bubble in result["bubble"])


def test_comm_cost_adds_two_p_minus_1_latencies_to_gpipe_and_one_per_hop_to_naive():
    p, M, f, b, c = 4, 8, 1.0, 2.0, 0.5
    assert close(simulate(S.build("gpipe", p, M), f, b, c)["makespan"], (M + p - 1) * (f + b) + 2 * (p - 1) * c)
    assert close(simulate(S.build("naive", p, M), f, b, c)["makespan"], M * (p * (f + b) + 2 * (p - 1) * c))


def test_costs_may_be_callables_of_rank_chunk_micro():
    slow = lambda rank, chunk, micro: 3.0 if rank == 1 else 1.0    # noqa: E731
    result = simulate(S.build("gpipe", 3, 4), slow, slow)
    assert result["busy"] == [8.0, 24.0, 8.0]
    # stage 1 paces the pipeline: 1 + 4 x 3 + 1 forward, the same backward
    assert close(result["makespan"], 28.0)


def test_interleaved_with_one_chunk_is_1f1b():
    assert S.build("interleaved", 4, 6, 1) == S.build("1f1b", 4, 6)
    assert S.expected_stash_peak("interleaved", 4, 6, 0) == 4


def test_interleaved_follows_megatron_order_on_rank_0():
    ops = [op for op in S.build("interleaved", 2, 4, 2)[0] if op.kind in (S.FORWARD, S.BACKWARD)]
    units = [(op.kind[0], op.micro, op.chunk) for op in ops]
    # warm-up 2 (p - 1) + (v - 1) p = 4 forwards: chunk 0 on m 0, 1, then chunk 1 on m 0, 1
    assert units[:4] == [("f", 0, 0), ("f", 1, 0), ("f", 0, 1), ("f", 1, 1)]
    assert units[4:8] == [("f", 2, 0), ("b", 0, 1), ("f", 3, 0), ("b", 1, 1)]
    assert units[-2:] == [("b", 2, 0), ("b", 3, 0)]


def test_virtual_stage_and_peer_follow_megatron_layout():
    assert [S.virtual_stage(r, c, 4) for c in range(2) for r in range(4)] == list(range(8))
    # stage 3 (rank 3, chunk 0) sends its activation to stage 4: rank 0, chunk 1
    assert S.peer(3, Op(S.SEND_ACTIVATION, 0, 0), 4) == 0
    assert S.peer(0, Op(S.RECV_ACTIVATION, 0, 1), 4) == 3
    assert S.peer(0, Op(S.SEND_GRADIENT, 0, 1), 4) == 3


def test_simulate_raises_on_a_deadlock_naming_the_ranks():
    # both ranks receive first: each waits for the other's send
    schedules = [[Op(S.RECV_GRADIENT, 0), Op(S.FORWARD, 0), Op(S.SEND_ACTIVATION, 0), Op(S.STEP, -1)],
                 [Op(S.RECV_ACTIVATION, 0), Op(S.FORWARD, 0), Op(S.SEND_GRADIENT, 0), Op(S.STEP, -1)]]
    with pytest.raises(RuntimeError, match=r"deadlock.*rank 0 at op 0.*recv_gradient.*rank 1 at op 0"):
        simulate(schedules)


def test_simulate_raises_on_a_send_nobody_receives():
    schedules = [[Op(S.FORWARD, 0), Op(S.SEND_ACTIVATION, 0), Op(S.STEP, -1)], [Op(S.STEP, -1)]]
    with pytest.raises(RuntimeError, match=r"never received.*\(0, 1, 'activation'\)"):
        simulate(schedules)


def without(ops, index):
    return ops[:index] + ops[index + 1:]


def test_check_rejects_a_backward_before_its_forward():
    F, B = (lambda m: Op(S.FORWARD, m)), (lambda m: Op(S.BACKWARD, m))    # noqa: E731
    with pytest.raises(ValueError, match=r"rank 0, op 0 .*backward before its forward"):
        S.check([[B(0), F(0), F(1), B(1), Op(S.STEP, -1)]], 1, 2)


def test_check_rejects_swapped_receive_order():
    schedules = S.build("gpipe", 2, 2)
    rank1 = schedules[1]          # RA0 F0 RA1 F1 B0 SG0 B1 SG1 STEP -> RA1 F1 RA0 F0 ...
    rank1[0:2], rank1[2:4] = rank1[2:4], rank1[0:2]
    with pytest.raises(ValueError, match=r"rank 1, op 0 .*receives activation .*\(1, 0\) from rank 0.*FIFO"):
        S.check(schedules, 2, 2)
    with pytest.raises(RuntimeError, match=r"rank 1, op 0 .*received .*\(0, 0\), expected \(1, 0\)"):
        simulate(schedules)


def test_check_rejects_a_missing_or_misplaced_step():
    schedules = S.build("1f1b", 2, 2)
    with pytest.raises(ValueError, match=r"rank 1: missing STEP"):
        S.check([schedules[0], schedules[1][:-1]], 2, 2)
    with pytest.raises(ValueError, match=r"rank 0, op 0 .*STEP must be the last"):
        S.check([[Op(S.STEP, -1)] + schedules[0], schedules[1]], 2, 2)


def test_check_rejects_missing_extra_and_misplaced_messages():
    schedules = S.build("1f1b", 2, 1)    # rank 0: F0 SA0 RG0 B0 STEP; rank 1: RA0 F0 B0 SG0 STEP
    with pytest.raises(ValueError, match=r"rank 0 \(virtual stage 0\), micro-batch 0, chunk 0: missing send_activation"):
        S.check([without(schedules[0], 1), schedules[1]], 2, 1)
    with pytest.raises(ValueError, match=r"rank 0, op 0 .*virtual stage 0 has no recv_activation"):
        S.check([[Op(S.RECV_ACTIVATION, 0)] + schedules[0], schedules[1]], 2, 1)
    with pytest.raises(ValueError, match=r"rank 1, op 0 .*send_gradient before its backward"):
        S.check([schedules[0], [schedules[1][3]] + without(schedules[1], 3)], 2, 1)
    with pytest.raises(ValueError, match=r"rank 0, op 1 .*repeated"):
        S.check([[schedules[0][0]] + schedules[0], schedules[1]], 2, 1)
    with pytest.raises(ValueError, match=r"schedules: 1 op lists for stages=2"):
        S.check(schedules[:1], 2, 1)


@pytest.mark.parametrize("args, message", [
    (("pipedream", 2, 2), r"name: unknown schedule 'pipedream'"),
    (("gpipe", 0, 2), r"stages must be an integer >= 1, got 0"),
    (("1f1b", 2, 0), r"micro_batches must be an integer >= 1, got 0"),
    (("gpipe", 2, 2, 2), r"chunks must be 1 for schedule 'gpipe'"),
    (("interleaved", 2, 2, 0), r"chunks must be an integer >= 1, got 0"),
    (("interleaved", 4, 6, 2), r"micro_batches \(6\) must be a multiple of stages \(4\)"),
])
def test_bad_arguments_raise_naming_them(args, message):
    with pytest.raises(ValueError, match=message):
        S.build(*args)
    with pytest.raises(ValueError, match=message):
        S.expected_stash_peak(*args[:3], 0, *args[3:])


def test_bad_costs_raise_naming_them():
    schedules = S.build("gpipe", 2, 2)
    with pytest.raises(ValueError, match=r"forward_cost must be"):
        simulate(schedules, forward_cost=-1.0)
    with pytest.raises(ValueError, match=r"comm_cost must be"):
        simulate(schedules, comm_cost="slow")


@pytest.mark.parametrize("name, v", [("1f1b", 1), ("interleaved", 2)])
def test_gantt_draws_on_an_agg_figure(name, v):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, ax = plt.subplots()
    events = simulate(S.build(name, 4, 8, v), 1.0 / v, 2.0 / v)["events"]
    gantt.draw(ax, events, title=name)
    figure.canvas.draw()
    assert len(ax.patches) == sum(len(e) for e in events)
    assert ax.get_title() == name and [t.get_text() for t in ax.get_yticklabels()][0] == "rank 0"
    plt.close(figure)
