"""Parameter servers in the in-process world, through the unchanged runner (strategies.train).

ps-sync == one process at the same global batch (SGD, momentum, Adam; 1 server + 3 workers and
2 + 2; float64 1e-10, float32 measured), ps-ssp --staleness 0 == ps-sync; the invariants of
the asynchronous variants (every push applied once, versions increasing, theta = theta_0 minus
the logged updates, SSP's bound); backup workers (counts exact, nothing in flight after
drain); bytes per role == formula exactly; bad flags; a failing worker.
"""
import pathlib
import sys

import numpy as np
import pytest

import collectives
from collectives import ANY_SOURCE, ANY_TAG
from strategies import STRATEGIES, loop, train
from strategies.parameter_server import PSAsync, PSSSP, PSSync

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
import faults  # noqa: E402  (tests/mpi/faults.py)
from saved_params import max_diff  # noqa: E402  (tests/mpi/saved_params.py)

EPOCHS_OF_4 = ["--batch-size", "960", "--max-steps", "6"]    # 4 steps, then 2: an epoch boundary
COMMON = ["--quiet", "--dtype", "float64", "--epochs", "2", "--max-steps", "12", "--batch-size", "96"]
OPTIMIZERS = {"sgd": [], "momentum": ["--momentum", "0.9"], "adam": ["--optimizer", "adam", "--lr", "0.01"]}


@pytest.fixture(scope="module")
def data():
    return {dtype: loop.load_data(train.parse_args(["--dtype", dtype])) for dtype in ("float32", "float64")}


def run(data, strategy, ranks, *extra, save=None, timeout=60):
    args = train.parse_args([*COMMON, "--strategy", strategy, *extra])
    args.save_params = save and str(save)
    return collectives.spawn(lambda comm: train.run(args, comm, data[args.dtype]), ranks, timeout=timeout)


def assert_bytes_match_formula(record):
    for role, entry in record["roles"].items():
        assert entry["bytes_sent_per_rank_per_step"] == entry["formula_bytes_sent_per_rank_per_step"], role
    assert record["bytes_sent_per_rank_per_step"] == pytest.approx(   # a mean of means: rounding
        record["formula_bytes_per_rank_per_step"], rel=1e-14)


def test_the_schedule_hands_out_chunks_of_b_over_w_rows():
    """Chunk c = share c mod W of global batch c div W; in_step follows the server's version,
    first_come the next free chunk; NONE_LEFT after the epoch's W x steps chunks."""
    from strategies.parameter_server.schedule import NONE_LEFT, Schedule, chunk_rows
    assert chunk_rows(7, 3, 96) == (2, slice(32, 64))
    schedule = Schedule(workers=3, first_worker=1)
    schedule.begin(steps=2, version=10)
    assert [schedule.first_come() for _ in range(4)] == [3, 4, 5, NONE_LEFT]   # 0, 1, 2: at the start
    assert [schedule.in_step(worker, 11) for worker in (1, 2, 3)] == [3, 4, 5]
    assert schedule.in_step(2, 12) == NONE_LEFT


@pytest.mark.parametrize("servers", [1, 2])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_ps_sync_equals_the_single_process_at_the_same_global_batch(data, tmp_path, optimizer, servers):
    """4 ranks: 1 server + 3 workers (32 rows each) or 2 + 2 (48 each); 12 steps, float64."""
    flags = OPTIMIZERS[optimizer]
    single = run(data, "single", 1, *flags, save=tmp_path / "single.npz")[0]
    records = run(data, "ps-sync", 4, "--servers", str(servers), *flags, save=tmp_path / "ps.npz")
    record = records[0]
    assert "error" not in record, record
    assert record["final_loss"] == pytest.approx(single["final_loss"], abs=1e-12)
    assert record["final_test_accuracy"] == single["final_test_accuracy"]
    assert max_diff(tmp_path / "ps.npz", tmp_path / "single.npz") <= 1e-10
    assert {r["params_sha256"] for r in records} == {record["params_sha256"]}   # one model everywhere
    assert record["epochs"][-1]["consensus_distance"] is None
    assert record["staleness_histogram"] == {"0": 12 * (4 - servers) * servers}
    assert_bytes_match_formula(record)


def test_ps_sync_equals_the_single_process_across_an_epoch_boundary(data, tmp_path):
    run(data, "single", 1, *EPOCHS_OF_4, save=tmp_path / "single.npz")
    record = run(data, "ps-sync", 4, "--servers", "2", *EPOCHS_OF_4, save=tmp_path / "ps.npz")[0]
    assert [epoch["steps"] for epoch in record["epochs"]] == [4, 6]
    assert max_diff(tmp_path / "ps.npz", tmp_path / "single.npz") <= 1e-10
    assert record["chunks_per_worker"] == {"2": 6, "3": 6}


def test_ps_sync_in_float32_stays_within_the_measured_tolerance(data, tmp_path):
    run(data, "single", 1, "--dtype", "float32", save=tmp_path / "single.npz")
    run(data, "ps-sync", 4, "--dtype", "float32", save=tmp_path / "ps.npz")
    error = max_diff(tmp_path / "ps.npz", tmp_path / "single.npz")
    print(f"ps-sync float32 vs single after 12 steps: max |diff| = {error:.2e}")
    assert error <= 1e-6              # float32 sums in another order: not bitwise, but close


@pytest.mark.parametrize("servers", [1, 2])
def test_ssp_with_staleness_0_equals_ps_sync_with_plain_sgd(data, tmp_path, servers):
    run(data, "ps-sync", 4, "--servers", str(servers), save=tmp_path / "sync.npz")
    record = run(data, "ps-ssp", 4, "--servers", str(servers), "--staleness", "0",
                 save=tmp_path / "ssp.npz")[0]
    assert max_diff(tmp_path / "ssp.npz", tmp_path / "sync.npz") <= 1e-10
    assert set(record["reply_clock_leads"]) == {"0"}         # nobody ever ran ahead


def bytes_by_hand(record, servers):
    """Per step: a worker n + 16 S (one push per global batch on average: W x steps chunks
    over W workers), plus 16 (S - 1) per epoch when it leaves; a server W (n_j + 16)."""
    n = record["n_params"] * 8                                 # float64 theta, 2 blocks of n/2
    workers, steps, epochs = record["world_size"] - servers, record["steps"], len(record["epochs"])
    return {"worker": n + 16 * servers + 16 * (servers - 1) * epochs / steps,
            "server": workers * (n / servers + 16)}


@pytest.mark.parametrize("strategy, servers", [("ps-sync", 1), ("ps-sync", 2), ("ps-async", 1),
                                               ("ps-async", 2), ("ps-ssp", 2)])
def test_bytes_per_role_equal_the_formula_with_headers(data, strategy, servers):
    record = run(data, strategy, 4, "--servers", str(servers))[0]
    assert_bytes_match_formula(record)
    for role, expected in bytes_by_hand(record, servers).items():
        assert record["roles"][role]["bytes_sent_per_rank_per_step"] == expected, role
    server = record["roles"]["server"]
    leaves = 16 * (4 - servers) * len(record["epochs"]) * (servers - 1) / servers   # servers 1..S-1
    assert server["bytes_received_per_rank"] == server["bytes_sent_per_rank"] + leaves  # each push answered


@pytest.fixture
def logged(monkeypatch):
    """Register logging copies of ps-async and ps-ssp; returns the list their servers fill."""
    servers = []

    def logging(base):
        class Logged(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.theta_0, self.received, self.updates = self.theta.copy(), [], []
                if self.role == "server":
                    servers.append(self)

            def receive(self):
                push = super().receive()
                if push is not None:
                    self.received.append(push[:3])                 # (worker, version, chunk)
                return push

            def apply(self, optimizer, block, tau):
                scale = optimizer.defaults["lr"] / self.workers / (max(1, tau) if self.staleness_lr else 1)
                super().apply(optimizer, block, tau)
                self.updates.append((tau, self.version, scale * block))

        monkeypatch.setitem(STRATEGIES, base.name, Logged)

    logging(PSAsync)
    logging(PSSSP)
    return servers


@pytest.mark.parametrize("flags", [["ps-async"], ["ps-async", "--staleness-lr"], ["ps-async", "--servers", "2"],
                                   ["ps-ssp", "--staleness", "1", "--staleness-lr"],
                                   ["ps-ssp", "--staleness", "1", "--slow-rank", "3", "--slow-factor", "3"],
                                   ["ps-async", *EPOCHS_OF_4, "--slow-rank", "3", "--slow-factor", "4"],
                                   ["ps-ssp", *EPOCHS_OF_4, "--servers", "2", "--slow-rank", "3",
                                    "--slow-factor", "4"]])
def test_asynchronous_invariants(data, logged, flags):
    strategy, extra = flags[0], flags[1:]
    record = run(data, strategy, 4, *extra)[0]
    steps, S = record["steps"], len(logged)
    W = 4 - S
    for server in logged:
        lo, hi = server.bounds[server.comm.rank]
        chunks = [chunk for _worker, _version, chunk in server.received]
        per_epoch = [epoch["steps"] - before["steps"] for before, epoch in
                     zip([{"steps": 0}] + record["epochs"], record["epochs"])]
        assert sorted(chunks) == sorted(c for T in per_epoch for c in range(T * W))  # each chunk once
        assert len(server.received) == steps * W                         # ... and each push applied once
        assert [version for _tau, version, _u in server.updates] == list(range(1, steps * W + 1))
        applied = server.theta_0[lo:hi] - sum(update for _tau, _version, update in server.updates)
        assert np.abs(server.shard.data - applied).max() <= 1e-12    # theta = theta_0 - sum of updates
    assert sum(record["staleness_histogram"].values()) == record["updates_applied"] == steps * W * S
    assert sum(record["reply_clock_leads"].values()) == steps * W * S
    chunks = record["chunks_per_worker"]
    assert sum(chunks.values()) == steps * W
    if strategy == "ps-async" and "--slow-rank" in extra:                   # first come, first served
        assert chunks["3"] < min(chunks["1"], chunks["2"]), chunks
    if strategy == "ps-ssp":
        s = train.parse_args(extra).staleness
        assert max(map(int, record["reply_clock_leads"])) <= s              # Ho et al.'s bound, in clocks
        assert max(map(int, record["staleness_histogram"])) <= (W - 1) * (2 * s + 1)   # ... in updates
    assert_bytes_match_formula(record)


def test_mean_staleness_of_ps_async_is_about_w_minus_1(data):
    """W = 3 equal workers: between a worker's pull and its push being applied, the other two
    push once each on average, so mean tau ~ 2. Threads on a shared core can bunch the pushes,
    hence the loose band [1, 3]."""
    record = run(data, "ps-async", 4, "--max-steps", "40")[0]
    print(f"ps-async W = 3: mean staleness {record['mean_staleness']:.2f}, "
          f"histogram {record['staleness_histogram']}")
    assert 1.0 <= record["mean_staleness"] <= 3.0


@pytest.fixture
def drained(monkeypatch):
    """ps-sync whose server checks, after every drain, that no message is left unreceived."""
    leftovers = []

    class Checked(PSSync):
        def drain(self):
            super().drain()
            if self.role == "server":
                leftovers.append((len(self.left), self.comm.iprobe(ANY_SOURCE, ANY_TAG)))

    monkeypatch.setitem(STRATEGIES, PSSync.name, Checked)
    return leftovers


@pytest.mark.parametrize("slow", [[], ["--slow-rank", "1", "--slow-factor", "4"]])
def test_backup_workers_count_steps_and_drops_and_leave_nothing_in_flight(data, drained, slow):
    record = run(data, "ps-sync", 4, "--backup-workers", "1", *slow)[0]
    steps = record["steps"]
    assert steps == 12
    assert record["updates_applied"] == steps * 2                     # W - b = 2 gradients per step
    pushes = sum(record["chunks_per_worker"].values())
    assert record["gradients_dropped"] == pushes - steps * 2          # the rest: late, dropped
    assert drained and all(leftover == (3, None) for leftover in drained)   # all left, nothing unread
    assert_bytes_match_formula(record)                                 # every push answered once
    if slow:
        chunks = record["chunks_per_worker"]
        print(f"backup worker, rank 1 four times slower: chunks {chunks}, time split {record['time_split']}")
        assert chunks["1"] < min(chunks["2"], chunks["3"])             # it skips what it missed


def test_report_has_a_time_split_per_role_and_a_bounded_timeline(data):
    record = run(data, "ps-async", 3, "--max-steps", "120")[0]
    assert set(record["time_split"]) == {"server", "worker"}
    assert all(set(split) == {"compute", "push", "pull", "wait"} for split in record["time_split"].values())
    assert record["time_split"]["worker"]["compute"] > 0 and record["time_split"]["server"]["wait"] > 0
    assert len(record["timeline"]) == 3
    for events in record["timeline"]:
        assert 0 < len(events) <= 200
        assert all(kind in {"compute", "push", "wait", "pull", "apply"} and 0 <= a <= b
                   for kind, a, b in events)


@pytest.mark.parametrize("ranks, flags, message", [
    (4, ["--strategy", "ps-sync", "--batch-size", "97"], "must divide evenly over the 3 data-parallel ranks"),
    (4, ["--strategy", "ps-sync", "--backup-workers", "3"], "--backup-workers 3 must be in 0 .. W-1 = 2"),
    (4, ["--strategy", "ps-async", "--backup-workers", "1"], "--backup-workers is for --strategy ps-sync"),
    (4, ["--strategy", "ps-sync", "--servers", "4"], "--servers 4 needs 1 <= servers < world size 4"),
    (4, ["--strategy", "ps-ssp", "--servers", "0"], "--servers 0 needs 1 <= servers"),
    (4, ["--strategy", "ps-ssp", "--staleness", "-1"], "--staleness must be >= 0"),
    (4, ["--strategy", "ps-async", "--slow-rank", "0"], "--slow-rank 0 must be a worker's world rank (1 .. 3)"),
    (4, ["--strategy", "ps-async", "--slow-factor", "0.5"], "--slow-factor must be >= 1"),
    (1, ["--strategy", "ps-sync"], "needs 1 <= servers < world size 1"),
])
def test_bad_flags_are_one_clear_error_on_every_rank(data, ranks, flags, message):
    args = train.parse_args(["--quiet", *flags])
    records = collectives.spawn(lambda comm: train.run(args, comm, data["float32"]), ranks, timeout=20)
    assert all(message in record.get("error", "") for record in records), records[0]


def test_each_flag_is_added_once_for_the_three_variants():
    parser = train.build_parser()
    assert sum(group.title.startswith("parameter server") for group in parser._action_groups) == 1
    args = parser.parse_args(["--strategy", "ps-ssp", "--servers", "2", "--staleness", "3"])
    assert (args.servers, args.staleness, args.backup_workers, args.slow_rank) == (2, 3, 0, None)


@pytest.mark.parametrize("failing", [0, 2])      # the server, a worker
def test_a_failing_rank_aborts_the_run_with_a_message_naming_it(data, monkeypatch, failing):
    """The world never hangs: ranks waiting on the failed one raise too (RankExitedError at
    once for a named peer; DeadlockError after the wait bound for the server's ANY_SOURCE
    receive, which another live worker could still satisfy). The failure is in the errors,
    named by its rank."""
    monkeypatch.setitem(STRATEGIES, PSSync.name, faults.failing(PSSync, failing, step=3))
    with pytest.raises(collectives.RankError) as failure:
        run(data, "ps-sync", 4, timeout=3)
    role = "server" if failing == 0 else "worker"
    assert str(failure.value.errors[failing]) == f"{role} rank {failing} fails on purpose"
    assert isinstance(failure.value.errors[failing], RuntimeError)     # the cause, not a consequence


def test_the_cost_model_makes_one_server_the_bottleneck_and_s_servers_divide_it():
    """T_ps(W, S, n) = 2 max(W, S) alpha + 2 max(W/S, 1) n beta + (W/S) n gamma (cost.py)."""
    from collectives.costmodel import LinkModel
    from strategies.parameter_server.cost import ps_step_seconds, ring_step_seconds
    bandwidth = LinkModel(alpha=0.0, beta=1e-9)
    n = 1 << 20
    assert ps_step_seconds(8, 1, n, bandwidth) == pytest.approx(2 * 8 * n * 1e-9)     # W n in, W n out
    assert ps_step_seconds(8, 4, n, bandwidth) == pytest.approx(2 * 2 * n * 1e-9)     # each 1/S of it
    assert ps_step_seconds(8, 8, n, bandwidth) == pytest.approx(2 * n * 1e-9)         # S = W: 2 n per link
    assert ring_step_seconds(8, n, bandwidth) == pytest.approx(2 * 7 / 8 * n * 1e-9)  # bounded in W
    assert all(ps_step_seconds(W, 1, n, bandwidth) > ring_step_seconds(W, n, bandwidth) for W in (2, 8, 64))
    latency = LinkModel(alpha=1e-5, beta=0.0)
    assert ps_step_seconds(64, 1, n, latency) == pytest.approx(2 * 64 * 1e-5)
    assert ring_step_seconds(64, n, latency) == pytest.approx(2 * 63 * 1e-5)


def test_a_worker_driven_without_begin_epoch_says_so():
    """A loop of one's own must call begin_epoch (the runner does): a clear error, no hang."""
    from engine import models

    def step(comm):
        strategy = PSSync(models.build("mlp"), comm)
        if strategy.role == "worker":
            strategy.train_step(None, None, None, None)

    with pytest.raises(collectives.RankError, match="worker 1: begin_epoch was not called"):
        collectives.spawn(step, 2, timeout=5)
