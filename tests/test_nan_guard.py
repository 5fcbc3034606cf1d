"""The numerical guard (strategies/nan_guard.py, MATH A8): a NaN or an infinity is caught on
the rank that made it, before the all-reduce; --on-nan stop names rank, step and tensor,
--on-nan skip drops the step on every rank alike.

The fault is a real one: one training row of NaN pixels. Where it lands (which step, which
rank) is read from the runner's loader, whose order is a function of (seed, epoch).
"""
import os
import sys

import numpy
import pytest

import collectives
from engine import nn
from strategies import loop
from strategies.loader import RankLoader
from strategies.nan_guard import NanGuard, NonFiniteError
from strategies.train import parse_args, run

B, K, ROW = 64, 2, 1234


def poisoned(args):
    X_train, y_train, X_test, y_test = loop.load_data(args)
    X_train = X_train.copy()
    X_train[ROW] = numpy.nan
    return X_train, y_train, X_test, y_test


def where_the_row_lands(n, seed=0):
    """(step from 1, rank) of the global batch holding ROW in epoch 0, with B // K rows per rank:
    the runner's own loader (strategies/loader.py) over the row numbers, read back."""
    order = RankLoader(numpy.arange(n), numpy.arange(n), B, slice(0, B), seed=seed)
    for step, (rows, _) in enumerate(order, start=1):
        if ROW in rows.numpy():
            return step, int(numpy.flatnonzero(rows.numpy() == ROW)[0]) // (B // K)
    raise AssertionError(f"row {ROW} is in no batch of epoch 0")


def train(flags, ranks=K, timeout=60):
    args = parse_args(["--batch-size", str(B), "--epochs", "1", "--quiet", *flags])
    data = poisoned(args)
    return collectives.spawn(lambda comm: run(args, comm, dataset=data), ranks, timeout=timeout)


def test_stop_names_the_rank_the_step_and_the_loss():
    step, rank = where_the_row_lands(4000)
    with pytest.raises(collectives.RankError) as raised:
        train(["--strategy", "dp", "--max-steps", str(step + 2)])
    cause = raised.value.__cause__
    assert isinstance(cause, NonFiniteError)
    assert f"rank {rank} of {K}, step {step}: the loss is nan" in str(cause)
    assert "before any all-reduce" in str(cause)


@pytest.mark.parametrize("strategy", ["dp", "local-sgd", "gossip"])
def test_skip_drops_the_step_on_every_rank_and_training_goes_on(strategy):
    step, _ = where_the_row_lands(4000)
    records = train(["--strategy", strategy, "--on-nan", "skip", "--max-steps", str(step + 5)])
    for record in records:
        assert record["nan_steps_skipped"] == 1 and numpy.isfinite(record["final_loss"])
    if strategy == "dp":                           # the replicas stayed bit-identical
        assert len({r["params_sha256"] for r in records}) == 1


def test_skip_equals_training_without_that_batch_on_a_single_rank():
    """single --on-nan skip == the same run whose poisoned step has no update at all: every
    later step starts from the same theta, so a dropped step changes nothing else."""
    step, _ = where_the_row_lands(4000)
    skipped = train(["--strategy", "single", "--on-nan", "skip", "--max-steps", str(step)], ranks=1)[0]
    before = train(["--strategy", "single", "--max-steps", str(step - 1)], ranks=1)[0]
    assert skipped["nan_steps_skipped"] == 1 and skipped["params_sha256"] == before["params_sha256"]


def test_a_parameter_server_worker_stops_before_its_push():
    """The server then waits for a push that never comes while the other worker waits for its
    reply: in this threads world a deadlock, ended by the (short) wait timeout; under mpirun
    the raising rank aborts the job at once."""
    step, _ = where_the_row_lands(4000)
    with pytest.raises(collectives.RankError) as raised:
        train(["--strategy", "ps-sync", "--max-steps", str(step + 2)], ranks=3, timeout=3)
    assert isinstance(raised.value.__cause__, NonFiniteError)
    assert "the loss is nan" in str(raised.value.__cause__)


@pytest.mark.parametrize("flags", [["--strategy", "ps-sync"], ["--strategy", "pipeline"],
                                   ["--strategy", "dp", "--overlap"]])
def test_skip_is_refused_where_a_rank_cannot_drop_a_step_alone(flags):
    record = train([*flags, "--on-nan", "skip", "--max-steps", "2"])[0]
    assert "--on-nan skip drops a step on every rank alike" in record["error"]


def test_the_gradient_check_names_the_tensor_and_counts_its_bad_entries():
    layer = nn.Linear(3, 2)
    comm = collectives.spawn(lambda c: c, 1)[0]
    guard = NanGuard("stop", comm, layer.named_parameters())
    layer.weight.grad = numpy.zeros((2, 3), numpy.float32)
    layer.bias.grad = numpy.array([numpy.inf, 1.0], numpy.float32)
    assert guard.problem(0.5) == "the gradient of bias (2,) has 1 of 2 entries NaN or infinite"
    layer.bias.grad = numpy.array([3e38, 3e38], numpy.float32)     # the sum overflows, no entry does
    assert guard.problem(0.5) is None
    with pytest.raises(NonFiniteError, match="rank 0 of 1, step 7: the loss is inf"):
        guard.drop_step(float("inf"), 7)


def test_a_diverging_run_exits_1_under_mpirun():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "mpi"))
    from launch import launch
    result = launch("strategies.train", 2, "--max-steps", "30", "--epochs", "1", "--lr", "1e20", "--quiet")
    assert result.returncode != 0
    assert "--on-nan stop: rank" in result.stderr and "step" in result.stderr
