"""Distributed training strategies, each one a small class over a ``collectives`` Comm.

    from strategies import DataParallel, LocalSGD, Gossip
    dp = DataParallel(model, comm, algorithm="ring")     # comm = collectives.world() or spawn's
    result = dp.train_step(opt, F.cross_entropy, xb, yb) # or: backward; dp.after_backward(); opt.step()

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp        # the runner (train.py)

Table of contents:

    base.py           Strategy: what a rank does in a step, and how to look at the model; Single
    grid.py           Grid: world ranks as (dp, pp, tp) coordinates, one communicator per axis
    data_parallel.py  NaiveDataParallel (one all-reduce per tensor), DataParallel (bucketed)  F9, F10
    local_sgd.py      LocalSGD: H local steps, then parameter averaging                      F11
    gossip.py         Gossip: average with the neighbours in a Topology                       A6
    traffic.py        bytes per rank per step, by formula (what the counters must show)
    parameters.py     flatten, broadcast, average, assemble a whole model from its owners
    loader.py         RankLoader: this rank's rows of every global batch
    messages.py       gather/broadcast small JSON values (roles, counters) between ranks
    registry.py       STRATEGIES: --strategy name -> class (a new strategy adds one entry)
    train.py          the runner's command line; loop.py its training loop; record.py its record
"""
from strategies.base import Single, StepResult, Strategy
from strategies.data_parallel import DataParallel, NaiveDataParallel
from strategies.gossip import Gossip, Topology
from strategies.grid import Grid
from strategies.local_sgd import LocalSGD
from strategies.registry import STRATEGIES

__all__ = ["Strategy", "StepResult", "Single", "DataParallel", "NaiveDataParallel", "LocalSGD",
           "Gossip", "Topology", "Grid", "STRATEGIES"]
