"""Data parallelism with compressed gradients (MATH A6: send less; F10 approximately).

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp --compress topk --ratio 0.01 --error-feedback
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp --compress powersgd --rank 2
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp --compress qsgd --levels 16

One step on K ranks: the local gradients (all parameters, flattened in the reverse order dp
buckets them) go through a compressor's exchange (strategies/compression/), which returns on
every rank the mean over ranks of what each rank's compressed gradient decodes to,

    g ~ (1/K) sum_k D(C(g_k + e_k))          e_k: the rank's error-feedback residual

and the optimiser steps with it. ``--compress none`` is plain dp (the DataParallel path, bit
for bit). Bytes per step are the compressor's formula (``bytes_sent(K, n, itemsize)``), which
the record sets beside the counters. Compressors that need matrices (PowerSGD) get each
parameter's shape as (rows, the rest): a Conv2d weight (o, i, kh, kw) is an o x (i kh kw)
matrix; vectors (biases) travel uncompressed.
"""
import argparse
import math

import numpy

from strategies.base import timed
from strategies.compression import COMPRESSORS, build
from strategies.data_parallel import DataParallel
from strategies.parameters import gradients


class CompressedDataParallel(DataParallel):
    """dp whose gradient exchange is a compressor's (``--compress``)."""

    resizable = False                    # residuals and random streams differ per rank
    state_attributes = DataParallel.state_attributes + ("compressor",)

    def __init__(self, model, comm, compressor, **dp_options):
        super().__init__(model, comm, **dp_options)
        self.compressor = compressor
        self.n = sum(p.data.size for p in self.params)
        self.formula_bytes = 0.0      # the formula summed step by step (DGC's warm-up varies it)

    @classmethod
    def matrix_shapes(cls, params):
        return [(p.shape[0], math.prod(p.shape[1:])) if len(p.shape) >= 2 else (p.data.size,) for p in params]

    @timed
    def allreduce_gradients(self):
        grads = gradients(self.params)
        flat = numpy.concatenate([g.reshape(-1) for g in grads])                 # (n,)
        self.formula_bytes += self.bytes_per_step()[self.role]                  # before: this step's
        mean = self.compressor.exchange(self.comm, flat)
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = mean[offset:offset + g.size].reshape(g.shape)
            offset += g.size

    def bytes_per_step(self):
        """The compressor's formula for the next exchange (bytes each rank sends)."""
        return {self.role: self.compressor.bytes_sent(self.comm.size, self.n, self.params[0].data.itemsize)}

    def bytes_for_steps(self, steps):
        return {self.role: self.formula_bytes}


def add_arguments(parser):
    group = parser.add_argument_group("gradient compression (dp --compress)")
    group.add_argument("--compress", choices=sorted(COMPRESSORS), default="none")
    group.add_argument("--ratio", type=float, default=0.01, help="topk / randomk: the share of entries sent")
    group.add_argument("--levels", type=int, default=16, help="qsgd: quantisation levels s")
    group.add_argument("--rank", type=int, default=2, help="powersgd: the rank r of P Q^T")
    group.add_argument("--error-feedback", action=argparse.BooleanOptionalAction, default=None,
                       help="add back what compression lost, e (default: on for topk, randomk, sign, powersgd)")
    group.add_argument("--momentum-correction", type=float, default=0.0, metavar="M",
                       help="topk: DGC's momentum correction with momentum M (then run --momentum 0)")
    group.add_argument("--warmup-steps", type=int, default=0, help="topk: DGC's density warm-up")


def check(args):
    """Why these compression flags cannot run, or None."""
    if args.compress == "none":
        return None
    if args.overlap:
        return "--overlap is for uncompressed dp: --compress exchanges the whole gradient after backward"
    if args.momentum_correction and args.momentum:
        return "--momentum-correction keeps DGC's momentum in the compressor: run it with --momentum 0"
    try:
        compressor_from_args(args, shapes=[(2, 2)])
    except ValueError as exc:
        return f"--compress {args.compress}: {exc}"
    return None


def compressor_from_args(args, shapes):
    return build(args.compress, ratio=args.ratio, levels=args.levels, rank=args.rank,
                 error_feedback=args.error_feedback, momentum_correction=args.momentum_correction,
                 warmup_steps=args.warmup_steps, seed=args.seed, shapes=shapes)
