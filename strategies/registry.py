"""Every strategy the runner and the benchmark know, by its ``--strategy`` name.

A new strategy (parameter server, pipeline, tensor parallel, compression) is a subclass of
``strategies.base.Strategy`` (its flags in ``add_arguments``, its checks in ``check``) and
one entry here; ``python -m strategies.train`` and ``benchmarks/strategies.py`` then run it
with no other change.
"""
from strategies.base import Single
from strategies.data_parallel import DataParallel
from strategies.gossip import Gossip
from strategies.local_sgd import LocalSGD
from strategies.parameter_server import PSAsync, PSSSP, PSSync
from strategies.pipeline.strategy import ModelParallel, TensorParallel

STRATEGIES = {cls.name: cls for cls in (
    Single,          # one rank, the whole global batch: the reference
    DataParallel,    # MATH A1, F10
    LocalSGD,        # MATH F11
    Gossip,          # MATH A6
    PSSync,          # MATH A2, A3: synchronous parameter server (backup workers)
    PSAsync,         # MATH A3: Downpour, applied on arrival
    PSSSP,           # MATH A3: stale synchronous parallel
    ModelParallel,   # MATH A4, A5: pipeline stages (x tp shards x dp replicas)
    TensorParallel,  # MATH A4: Megatron's column / row-parallel Linear pairs
)}
