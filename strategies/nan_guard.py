"""The numerical guard (MATH A8, keep training numerically sane): a NaN or an infinity in the
loss or in a gradient is caught on the rank that made it, right after backward, BEFORE the
all-reduce spreads it to every replica.

    --on-nan stop   (the default) raise NonFiniteError naming the rank, the step and the
                    tensor; under ``mpirun python -m mpi4py`` that aborts every rank, so a
                    diverging run exits non-zero instead of reporting ``loss nan`` and 0
    --on-nan skip   every rank drops the step (no all-reduce, no update) when ANY rank has a
                    non-finite value, which that rank reports; the steps dropped are counted
                    in the record (``nan_steps_skipped``). Replicated strategies only (single,
                    dp, local-sgd, gossip): a parameter server or a pipeline stage cannot drop
                    a step alone without the others waiting for its messages

The check per step: one pass over each gradient, ``isfinite(g.sum())`` (a non-finite entry
makes the sum non-finite; a finite sum that overflowed is then confirmed entry by entry), so
no temporary boolean array in the common case. ``skip`` adds one all-reduce of one number
per step (a max of "I have one"), on a communicator of its own that counts on no parent, so
the traffic the record compares with the formulas is unchanged.
"""
import math
import sys

import numpy

import collectives
from engine import backend

MODES = ("stop", "skip")


class NonFiniteError(FloatingPointError):
    """A NaN or an infinity in the loss or a gradient (--on-nan stop)."""


class NanGuard:
    """The guard of one rank: ``named`` is [(name, parameter)] whose gradients it checks."""

    def __init__(self, mode, comm, named):
        if mode not in MODES:
            raise ValueError(f"--on-nan must be one of {MODES}, got {mode!r}")
        self.mode, self.comm, self.named = mode, comm, list(named)
        self.agreement = comm.split(0, comm.rank, name="nan-guard", counted=False) if mode == "skip" else None
        self.skipped = 0

    def problem(self, loss):
        """What is non-finite on this rank (the loss, or the first gradient), or None."""
        if loss is not None and not math.isfinite(loss):
            return f"the loss is {loss}"
        for name, p in self.named:
            g = p.grad
            if g is None:
                continue
            xp = backend.array_module(g)
            if not bool(xp.isfinite(g.sum())) and not bool(xp.isfinite(g).all()):
                bad = int((~xp.isfinite(g)).sum())
                return f"the gradient of {name} {tuple(g.shape)} has {bad} of {g.size} entries NaN or infinite"
        return None

    def drop_step(self, loss, step):
        """Called after backward, before any message: True when this step must be dropped
        (the same answer on every rank); raises NonFiniteError in stop mode."""
        problem = self.problem(loss)
        where = f"rank {self.comm.rank} of {self.comm.size}, step {step}"
        if self.mode == "stop":
            if problem:
                raise NonFiniteError(f"--on-nan stop: {where}: {problem}, caught before any all-reduce "
                                     "(a smaller --lr, or --on-nan skip to drop such steps)")
            return False
        if problem:
            print(f"strategies.train: --on-nan skip: {where}: {problem}; the step is dropped on every rank",
                  file=sys.stderr, flush=True)
        flag = numpy.array([1.0 if problem else 0.0])
        if collectives.allreduce(self.agreement, flag, "tree", "max", check=False)[0]:
            self.skipped += 1
            return True
        return False
