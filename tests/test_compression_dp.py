"""Pruning under data parallelism, through the runner (--prune): every replica holds the same
mask (agreed and checked), pruned weights stay zero, and a pruned model trained on 4 ranks
equals the single process with the same mask (float64 1e-10), with SGD, momentum and Adam.
"""
import pathlib
import sys

import numpy as np
import pytest

import collectives
from strategies import loop, masks, train

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from saved_params import load, max_diff  # noqa: E402  (tests/mpi/saved_params.py)

COMMON = ["--quiet", "--dtype", "float64", "--model", "lenet300", "--epochs", "1", "--max-steps", "8",
          "--batch-size", "64", "--prune", "0.9"]
OPTIMIZERS = {"sgd": [], "momentum": ["--momentum", "0.9"], "adam": ["--optimizer", "adam", "--lr", "0.001"]}


@pytest.fixture(scope="module")
def data():
    return loop.load_data(train.parse_args(["--dtype", "float64"]))


def run(data, strategy, ranks, *extra, save=None):
    args = train.parse_args([*COMMON, "--strategy", strategy, *extra])
    args.save_params = save and str(save)
    return collectives.spawn(lambda comm: train.run(args, comm, data), ranks, timeout=60)


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_pruned_dp_on_4_ranks_equals_the_pruned_single_process(data, tmp_path, optimizer, scope):
    flags = [*OPTIMIZERS[optimizer], "--prune-scope", scope]
    single = run(data, "single", 1, *flags, save=tmp_path / "single.npz")[0]
    dp = run(data, "dp", 4, *flags, save=tmp_path / "dp.npz")[0]
    assert max_diff(tmp_path / "dp.npz", tmp_path / "single.npz") <= 1e-10
    weights = {name: w for name, w in load(tmp_path / "dp.npz").items() if name.endswith("weight")}
    zeros = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.size for w in weights.values())
    assert zeros == pytest.approx(0.9, abs=1e-3)                     # still 90 % zero after training
    assert dp["sparsity"] == single["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_replicas_with_different_masks_are_one_error_naming_them():
    def on(comm):
        mine = {"0.weight": np.arange(6) % 2 == (1 if comm.rank == 2 else 0)}
        masks.agree(comm, mine)

    with pytest.raises(collectives.RankError) as failure:
        collectives.spawn(on, 4, timeout=10)
    assert "the pruning masks of ranks [2] differ from rank 0's" in str(failure.value.__cause__)


@pytest.mark.parametrize("flags, message", [
    (["--prune", "1.0"], "--prune must be in [0, 1), got 1.0"),
    (["--strategy", "ps-sync"], "--prune is for strategies whose ranks hold the whole model"),
])
def test_bad_prune_flags_are_one_clear_error(data, flags, message):
    args = train.parse_args([*COMMON, "--strategy", "dp", *flags])
    records = collectives.spawn(lambda comm: train.run(args, comm, data), 4, timeout=20)
    assert all(message in r.get("error", "") for r in records), records[0]
