"""Distributed training strategies, each one a small class over a ``collectives`` Comm.

    from strategies import DataParallel, LocalSGD, Gossip
    dp = DataParallel(model, comm, algorithm="ring")     # comm = collectives.world() or spawn's
    loss = dp.train_step(opt, F.cross_entropy, xb, yb)   # or: backward; dp.after_backward(); opt.step()

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp        # the runner (train.py)

Table of contents:

    base.py           Strategy: one training step on a batch + the model to evaluate; Single
    data_parallel.py  NaiveDataParallel (one all-reduce per tensor), DataParallel (bucketed)  F9, F10
    local_sgd.py      LocalSGD: H local steps, then parameter averaging                      F11
    gossip.py         Gossip: average with the neighbours in a Topology                       A6
    traffic.py        bytes per rank per step, by formula (what the counters must show)
    registry.py       STRATEGIES: --strategy name -> class (later strategies add one entry)
    train.py          the runner: flags, fail-fast agreement, training loop, JSON record
"""
from strategies.base import Single, Strategy
from strategies.data_parallel import DataParallel, NaiveDataParallel
from strategies.gossip import Gossip, Topology
from strategies.local_sgd import LocalSGD
from strategies.registry import STRATEGIES

__all__ = ["Strategy", "Single", "DataParallel", "NaiveDataParallel", "LocalSGD", "Gossip",
           "Topology", "STRATEGIES"]
