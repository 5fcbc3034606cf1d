"""Strategies whose ranks differ, through the unchanged runner (strategies/train.py).

Two toys written here, each a page, show that the Strategy interface fits what data
parallelism does not: a pipeline of stages (each rank a slice of the Sequential, activations
forward, their gradients backward, a stage without parameters allowed) and one parameter
server (a rank with no data and the only optimiser; workers with no optimiser; gradients
received from ANY source). Through ``train.run`` each must give the single process's loss,
accuracy and saved parameters (float64: 1e-12 / 1e-10), and bytes per role equal to its
formula exactly.
"""
import pathlib
import sys

import numpy as np
import pytest

import collectives
from collectives import ANY_SOURCE
from collectives.tags import Tag
from engine import Tensor, no_grad
from strategies import STRATEGIES, StepResult, Strategy, train
from strategies.grid import Grid
from strategies.parameters import assembled_copy, flat_parameters, load_flat_parameters

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from saved_params import max_diff  # noqa: E402  (tests/mpi/saved_params.py)


class ToyPipeline(Strategy):
    """Rank i runs layers cut[i]:cut[i+1] of the model on the whole batch (no micro-batches)."""

    name = "toy-pipeline"
    replicated = False
    min_world_size = 2

    def __init__(self, model, comm):
        super().__init__(model, comm)
        self.grid = Grid(comm, pp=comm.size)
        cut = np.linspace(0, len(model), comm.size + 1).round().astype(int)
        self.stage = model[cut[self.grid.pp_rank]:cut[self.grid.pp_rank + 1]]
        self.role = f"stage {self.grid.pp_rank}"
        self.width_in, self.width_out = self._agree_widths(model[0].in_features)

    def _agree_widths(self, first_width):
        """Activation widths, agreed once: each stage tells the next what it will send."""
        width = np.array([first_width], np.int64)
        if not self.grid.is_first_stage:
            self.grid.pp.recv(width, self.grid.pp_prev, Tag.CONTROL)
        with no_grad():
            out = np.array([self.stage(Tensor(np.zeros((1, int(width[0]))))).shape[1]], np.int64)
        if not self.grid.is_last_stage:
            self.grid.pp.send(out, self.grid.pp_next, Tag.CONTROL)
        return int(width[0]), int(out[0])

    @classmethod
    def data_ranks(cls, world_size, args):
        return 1                                    # one pipeline: every stage sees the whole batch

    def local_rows(self, global_batch_size):
        return slice(0, global_batch_size)          # the first stage reads x, the last y

    def parameters(self):
        return self.stage.parameters()              # [] for a stage of ReLUs only

    def train_step(self, optimizer, loss_fn, xb, yb):
        pp, rows = self.grid.pp, len(yb)
        if optimizer is not None:
            optimizer.zero_grad()
        h = xb
        if not self.grid.is_first_stage:
            buf = np.empty((rows, self.width_in), xb.data.dtype)
            pp.recv(buf, self.grid.pp_prev, Tag.ACTIVATION)
            h = Tensor(buf, requires_grad=True)
        out = self.stage(h)
        result = StepResult(0.0, 0)
        if self.grid.is_last_stage:
            loss = loss_fn(out, yb)
            loss.backward()
            result = StepResult(loss.item() * rows, rows)
        else:
            pp.send(np.ascontiguousarray(out.data), self.grid.pp_next, Tag.ACTIVATION)
            grad = np.empty_like(out.data)
            pp.recv(grad, self.grid.pp_next, Tag.ACTIVATION_GRAD)
            out.backward(grad)
        if not self.grid.is_first_stage:
            pp.send(h.grad, self.grid.pp_prev, Tag.ACTIVATION_GRAD)
        if optimizer is not None:
            optimizer.step()
        self.steps += 1
        return result

    def eval_model(self, metrics_comm):
        owned = {name: p.data for name, p in self.stage.named_parameters()}   # the whole model's names
        return assembled_copy(self.model, owned, metrics_comm)

    def bytes_per_step(self):
        rows, itemsize = self.batch_size, self.model.parameters()[0].data.itemsize
        forward = 0 if self.grid.is_last_stage else rows * self.width_out * itemsize
        backward = 0 if self.grid.is_first_stage else rows * self.width_in * itemsize
        return {self.role: forward + backward}            # each stage states its own role

    @classmethod
    def from_args(cls, model, comm, args):
        strategy = cls(model, comm)
        strategy.batch_size = args.batch_size
        return strategy


class ToyServer(Strategy):
    """Rank 0 keeps theta and the optimiser; ranks 1..W compute gradients on B/W rows each."""

    name = "toy-server"
    replicated = False
    min_world_size = 2

    def __init__(self, model, comm):
        super().__init__(model, comm)
        self.role = "server" if comm.rank == 0 else "worker"
        self.workers = comm.size - 1

    @classmethod
    def data_ranks(cls, world_size, args):
        return world_size - 1

    def local_rows(self, global_batch_size):
        b = global_batch_size // self.workers
        return slice(0, 0) if self.role == "server" else slice((self.comm.rank - 1) * b, self.comm.rank * b)

    def parameters(self):
        return self.model.parameters() if self.role == "server" else []

    def train_step(self, optimizer, loss_fn, xb, yb):
        theta = flat_parameters(self.model)                               # (n,)
        if self.role == "worker":
            for p in self.model.parameters():
                p.grad = None
            loss = loss_fn(self.model(xb), yb)
            loss.backward()
            self.comm.send(np.concatenate([p.grad.reshape(-1) for p in self.model.parameters()]),
                           0, Tag.GRADIENT)                                # push g_k
            self.comm.recv(theta, 0, Tag.PARAMETERS)                      # pull the new theta
            load_flat_parameters(self.model, theta)
            return StepResult(loss.item() * len(yb), len(yb))
        pushed = {}
        for _ in range(self.workers):                                     # in arrival order
            g = np.empty_like(theta)
            status = self.comm.recv(g, ANY_SOURCE, Tag.GRADIENT)
            pushed[status.source] = g
        mean = sum(pushed[k] for k in sorted(pushed)) / self.workers      # F10, in rank order
        offset = 0
        for p in self.model.parameters():
            p.grad = mean[offset:offset + p.data.size].reshape(p.shape)
            offset += p.data.size
        optimizer.step()
        theta = flat_parameters(self.model)
        for worker in range(1, self.comm.size):
            self.comm.send(theta, worker, Tag.PARAMETERS)
        return StepResult(0.0, 0)

    def eval_model(self, metrics_comm):
        owned = {name: p.data for name, p in self.model.named_parameters()} if self.role == "server" else {}
        return assembled_copy(self.model, owned, metrics_comm)

    def bytes_per_step(self):
        n = self.model_bytes()
        return {"server": self.workers * n, "worker": n}


COMMON = ["--quiet", "--dtype", "float64", "--epochs", "2", "--max-steps", "12", "--batch-size", "32"]


@pytest.fixture
def registered(monkeypatch):
    for cls in (ToyPipeline, ToyServer):
        monkeypatch.setitem(STRATEGIES, cls.name, cls)


def run(strategy, ranks, tmp_path, *extra):
    args = train.parse_args([*COMMON, "--strategy", strategy, *extra,
                             "--save-params", str(tmp_path / f"{strategy}.npz")])
    return collectives.spawn(lambda comm: train.run(args, comm), ranks, timeout=60)


@pytest.mark.parametrize("strategy, ranks", [("toy-pipeline", 2), ("toy-pipeline", 3), ("toy-server", 3)])
def test_a_toy_strategy_runs_through_the_runner_and_equals_the_single_process(registered, tmp_path,
                                                                              strategy, ranks):
    single = run("single", 1, tmp_path)[0]
    records = run(strategy, ranks, tmp_path)
    record = records[0]
    assert "error" not in record, record
    for key in ("loss", "test_accuracy"):
        assert [r["epochs"][-1][key] for r in records] == [record["epochs"][-1][key]] * ranks
    assert record["final_loss"] == pytest.approx(single["final_loss"], abs=1e-12)
    assert record["final_test_accuracy"] == single["final_test_accuracy"]
    assert record["epochs"][-1]["consensus_distance"] is None           # no replicas to compare
    assert max_diff(tmp_path / f"{strategy}.npz", tmp_path / "single.npz") <= 1e-10   # same names too
    assert record["params_sha256"] == records[-1]["params_sha256"]      # one whole model, everywhere
    for role, entry in record["roles"].items():                         # measured == formula, per role
        assert entry["bytes_sent_per_rank_per_step"] == entry["formula_bytes_sent_per_rank_per_step"], role
    assert record["bytes_sent_per_rank_per_step"] == record["formula_bytes_per_rank_per_step"]


def test_a_pipeline_stage_without_parameters_has_no_optimiser(registered, tmp_path):
    """mlp = Linear, ReLU, Linear on 3 stages: stage 1 holds the ReLU alone."""
    records = run("toy-pipeline", 3, tmp_path)
    assert set(records[0]["roles"]) == {"stage 0", "stage 1", "stage 2"}
    assert records[0]["roles"]["stage 1"]["bytes_sent_per_rank_per_step"] > 0   # still relays


def test_the_server_role_is_counted_apart_from_the_workers(registered, tmp_path):
    record = run("toy-server", 3, tmp_path)[0]
    server, workers = record["roles"]["server"], record["roles"]["worker"]
    assert server["ranks"] == [0] and workers["ranks"] == [1, 2]
    n = record["n_params"] * 8
    assert server["bytes_sent_per_rank_per_step"] == 2 * n and workers["bytes_sent_per_rank_per_step"] == n
    assert server["bytes_received_per_rank"] == 2 * n * record["steps"]
    assert record["communicators"]["world"]["bytes_sent"] == 4 * n * record["steps"]


def test_the_toy_server_needs_a_batch_that_divides_over_its_workers(registered):
    args = train.parse_args([*COMMON, "--strategy", "toy-server", "--batch-size", "33"])
    comm = type("Comm", (), {"size": 3, "rank": 0})()
    assert "must divide evenly over the 2 data-parallel ranks" in train.check(args, comm, n_train=4000)


def test_the_runner_drains_every_epoch_and_records_the_strategys_report(monkeypatch, tmp_path):
    class Reporting(ToyServer):
        name = "toy-reporting"
        drains = 0

        def drain(self):
            self.drains += 1          # the end of each epoch: nothing may be in flight after it

        def report(self, metrics_comm):
            total = collectives.allreduce(metrics_comm, np.array([self.drains]), "tree", "sum", check=False)
            return {"drains_over_ranks": int(total[0])}

    monkeypatch.setitem(STRATEGIES, Reporting.name, Reporting)
    record = run(Reporting.name, 3, tmp_path)[0]
    assert record["drains_over_ranks"] == 3 * len(record["epochs"])     # every rank, every epoch
