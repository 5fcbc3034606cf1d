"""The same command twice gives bit-identical parameters, for every deterministic strategy and
several world sizes (threads world; tests/test_checkpoint_mpi.py shows MPI gives the same bits).

What makes a run reproducible here: theta_0 from --seed (engine/random.py), batch order from
(seed, epoch) (engine/data/loader.py), sums in a fixed order whatever the arrival order (the
ring's chunk schedule; a parameter server adds its pushes in worker-rank order), and the
random streams of randomk/qsgd seeded per rank from (seed, rank).

What is NOT reproducible, by design: ps-async and ps-ssp with W >= 2 workers apply gradients
in ARRIVAL order, which the operating system's scheduling decides, so two runs differ from
the first step on where two pushes race (docs/reliability.md). With one worker there is no
race, and ps-async is reproducible too (tested below); so is ps-ssp with s = 0, which equals
ps-sync (tests/test_parameter_server.py).
"""
import pytest

import collectives
from strategies.train import parse_args, run

COMMON = ["--batch-size", "96", "--epochs", "1", "--max-steps", "6", "--lr", "0.05", "--momentum", "0.9", "--quiet"]
MATRIX = [
    (["--strategy", "single"], 1),
    *[(["--strategy", "dp", "--algorithm", a], 4) for a in ("ring", "tree", "recursive-doubling", "naive")],
    *[(["--strategy", "dp", "--algorithm", "ring"], k) for k in (2, 3)],
    (["--strategy", "dp", "--overlap", "--bucket-bytes", "50000"], 2),
    *[(["--strategy", "local-sgd", "--period", "2"], k) for k in (2, 4)],
    *[(["--strategy", "gossip"], k) for k in (2, 4)],
    *[(["--strategy", "ps-sync", "--servers", str(s)], k) for s, k in ((1, 3), (1, 4), (2, 4))],
    (["--strategy", "ps-async"], 2),                              # one worker: no race
    *[(["--strategy", "pipeline", "--schedule", s, "--micro-batches", "4"], 2) for s in ("gpipe", "1f1b")],
    (["--strategy", "pipeline", "--dp", "2", "--micro-batches", "2"], 4),
    *[(["--strategy", "tp"], k) for k in (2, 4)],
    *[(["--strategy", "dp", "--compress", c, "--momentum", "0"], k)
      for c in ("fp16", "topk", "randomk", "qsgd", "sign", "powersgd") for k in ((2, 4) if c in ("topk", "qsgd") else (2,))],
]


def sha(flags, ranks):
    args = parse_args([*COMMON, *flags])
    records = collectives.spawn(lambda comm: run(args, comm), ranks, timeout=60)
    assert "error" not in records[0], records[0]
    return records[0]["params_sha256"]


@pytest.mark.parametrize("flags, ranks", MATRIX, ids=[f"{' '.join(f[1:])} K={k}" for f, k in MATRIX])
def test_the_same_command_twice_gives_the_same_bits(flags, ranks):
    assert sha(flags, ranks) == sha(flags, ranks)
