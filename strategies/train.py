"""The strategy runner's command line: every strategy, the same data, model, seed and flags.

    python -m strategies.train                                            # 1 process, dp on 1 rank
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp --algorithm ring
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy local-sgd --period 8 --out ls.json
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy gossip --topology ring
    python -m strategies.train --threads 4 --strategy dp                 # 4 ranks as threads, no MPI

(``python -m mpi4py`` makes an exception on one rank abort every rank instead of leaving the
others waiting.) --batch-size is the GLOBAL batch B: each of the K ranks trains on B/K rows of
it, so runs on different K see the same batches and, for dp, compute the same update (F10).

The runner in three parts, each one screen: this command line (flags, checks, the agreement
that stops every rank when one cannot start, main), strategies/loop.py (set up, the epochs,
evaluation) and strategies/record.py (the JSON record: bytes per role and per communicator
beside the formula, the hash of the whole model). A strategy adds its own flags with
``add_arguments`` and its checks with ``check``; adding one is its module plus one line in
strategies/registry.py.
"""
import argparse
import math
import os
import sys
import threading

import collectives
from engine import models
from engine.process import configure_process
from engine.threads import launched_by_mpi
from strategies.data_parallel import DEFAULT_BUCKET_BYTES
from strategies import loop
from strategies.loop import OPTIMIZERS
from strategies.messages import agree
from strategies.nan_guard import MODES, NonFiniteError
from strategies.registry import STRATEGIES


class UsageError(Exception):
    """A bad command line: reported once, by the runner's agreement, never by argparse's exit."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows each flag's default, and the module docstring as it is written."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, quiet=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.quiet = quiet                        # ranks other than 0 print neither help nor usage

    def error(self, message):
        raise UsageError(f"{message}\n{self.format_usage().strip()}")

    def _print_message(self, message, file=None):
        if not self.quiet:
            super()._print_message(message, file)


def build_parser(quiet=False):
    p = _Parser(prog="python -m strategies.train", quiet=quiet, description=__doc__,
                formatter_class=_Formatter)
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="dp")
    allreduce = p.add_argument_group("all-reduce (dp, local-sgd)")
    allreduce.add_argument("--algorithm", choices=sorted(collectives.ALGORITHMS) + ["auto"], default="ring",
                           help="a hand-written all-reduce, mpi (the library's own), or auto (the cost "
                                "model's choice per bucket size: collectives/algorithms.py)")
    allreduce.add_argument("--bucket-bytes", type=int, default=DEFAULT_BUCKET_BYTES,
                           help="the most bytes one all-reduce carries")
    training = p.add_argument_group("training")
    training.add_argument("--model", choices=sorted(models.MODELS), default="mlp")
    training.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist",
                          help="mnist without --data-path is the bundled 4,000 / 1,000 subset")
    training.add_argument("--data-path", default=None, help="a directory with the dataset's files")
    training.add_argument("--epochs", type=int, default=5)
    training.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    training.add_argument("--batch-size", type=int, default=64, help="the GLOBAL batch, split over the ranks")
    training.add_argument("--lr", type=float, default=0.1)
    training.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    training.add_argument("--momentum", type=float, default=0.0)
    training.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    training.add_argument("--seed", type=int, default=0)
    pruning = p.add_argument_group("pruning (replicated strategies: single, dp, local-sgd, gossip)")
    pruning.add_argument("--prune", type=float, default=0.0,
                         help="mask this fraction of the weights by magnitude before training")
    pruning.add_argument("--prune-scope", choices=["layer", "global"], default="layer")
    run_group = p.add_argument_group("the run")
    run_group.add_argument("--threads", type=int, default=1, help="without mpirun: run this many ranks as threads")
    run_group.add_argument("--out", default=None, help="write the JSON record here (rank 0)")
    run_group.add_argument("--save-params", default=None, help="write the whole final model here (.npz, rank 0)")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar, no per-epoch lines")
    run_group.add_argument("--on-nan", choices=MODES, default="stop",
                           help="a NaN/inf loss or gradient: stop the job, or skip the step on every rank")
    run_group.add_argument("--timeout", type=float, default=300.0, metavar="S",
                           help="a rank waiting S seconds in one receive or collective aborts the job "
                                "(collectives/watchdog.py); 0: wait forever")
    saving = p.add_argument_group("checkpoints (strategies/checkpoint/)")
    saving.add_argument("--checkpoint-dir", default=None, help="save the run here, every rank its part")
    saving.add_argument("--checkpoint-every", type=int, default=100, metavar="N", help="... every N optimiser steps")
    saving.add_argument("--keep-checkpoints", type=int, default=2, metavar="K", help="... keeping the K newest")
    saving.add_argument("--resume", action="store_true",
                        help="continue from the newest whole checkpoint in --checkpoint-dir (none: from step 0)")
    added = set()          # a family of strategies (ps-sync, ps-async, ...) shares one group
    for cls in STRATEGIES.values():
        if cls.add_arguments.__func__ not in added:
            added.add(cls.add_arguments.__func__)
            cls.add_arguments(p)
    return p


def parse_args(argv=None, quiet=False):
    """The flags as a Namespace; raises UsageError."""
    return build_parser(quiet).parse_args(argv)


def check(args, comm, n_train):
    """The reason this run cannot start on this rank, or None. Cheap: nothing sent or trained."""
    for flag, value, least in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                               ("--max-steps", 1 if args.max_steps is None else args.max_steps, 1),
                               ("--seed", args.seed, 0)):
        if value < least:
            return f"{flag} must be >= {least}, got {value}"
    if not (math.isfinite(args.lr) and math.isfinite(args.momentum)) or args.lr <= 0 or args.momentum < 0:
        return f"--lr must be a finite number > 0 and --momentum finite >= 0, got {args.lr} and {args.momentum}"
    if args.algorithm == "mpi" and not isinstance(comm, collectives.MPIComm):
        return "--algorithm mpi is MPI's own Allreduce: run under mpirun (the threads world has none)"
    if args.batch_size > n_train:
        return f"--batch-size {args.batch_size} is larger than the {n_train} training samples"
    for flag, path in (("--out", args.out), ("--save-params", args.save_params)):
        problem = path and comm.rank == 0 and unwritable(path)
        if problem:
            return f"{flag} {path}: {problem}"
    if args.on_nan == "skip" and (not STRATEGIES[args.strategy].replicated or getattr(args, "overlap", False)):
        return (f"--on-nan skip drops a step on every rank alike: for single, dp (without --overlap), "
                f"local-sgd and gossip, not {args.strategy}{' --overlap' if args.overlap else ''} (use --on-nan stop)")
    if not (math.isfinite(args.timeout) and args.timeout >= 0):
        return f"--timeout must be a number of seconds >= 0 (0: no watchdog), got {args.timeout}"
    problem = check_checkpoints(args, comm.rank)
    if problem:
        return problem
    if not 0 <= args.prune < 1:
        return f"--prune must be in [0, 1), got {args.prune}"
    if args.prune and not STRATEGIES[args.strategy].replicated:
        return (f"--prune is for strategies whose ranks hold the whole model (single, dp, local-sgd, "
                f"gossip), not {args.strategy}")
    return STRATEGIES[args.strategy].check(comm.size, args)


def check_checkpoints(args, rank):
    """Why the checkpoint flags cannot work, or None; rank 0 creates --checkpoint-dir."""
    if args.resume and not args.checkpoint_dir:
        return "--resume needs --checkpoint-dir (where the checkpoints are)"
    if args.checkpoint_every < 1 or args.keep_checkpoints < 1:
        return (f"--checkpoint-every and --keep-checkpoints must be >= 1, got "
                f"{args.checkpoint_every} and {args.keep_checkpoints}")
    if args.checkpoint_dir and rank == 0:
        directory = os.path.expanduser(args.checkpoint_dir)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            return f"--checkpoint-dir {args.checkpoint_dir}: {exc.strerror or exc}"
        if not os.access(directory, os.W_OK):
            return f"--checkpoint-dir {args.checkpoint_dir}: the directory is not writable"
    return None


def unwritable(path):
    """Why rank 0 could not write the file ``path`` at the end of the run, or None."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "is a directory (give a file name)"
    if not os.path.isdir(folder):
        return "no such directory"
    if not os.access(folder, os.W_OK):
        return "the directory is not writable"
    return None


def run(args, comm, dataset=None):
    """``strategies.loop.run`` with this command line's checks: what main runs on each rank."""
    return loop.run(args, comm, dataset, check=check)


def main(argv=None):
    """Entry point: under mpirun one rank per process; otherwise --threads ranks in this process."""
    if launched_by_mpi():
        configure_process()
        comm = collectives.world()
        try:
            args = parse_args(argv, quiet=comm.rank != 0)
        except UsageError as exc:              # the same argv everywhere: every rank gets here
            if agree(comm, str(exc)) == comm.rank:
                _report(exc)
            return _mpi_exit(2)
        collectives.set_timeout(args.timeout if math.isfinite(args.timeout) and args.timeout > 0 else None)
        try:
            return _mpi_exit(2) if "error" in run(args, comm) else 0
        except NonFiniteError as exc:       # the others wait in an all-reduce: end them all
            _report(exc)
            from mpi4py import MPI
            MPI.COMM_WORLD.Abort(1)
    try:
        args = parse_args(argv)
    except UsageError as exc:
        _report(exc)
        return 2
    if args.threads < 1:
        _report(f"--threads must be >= 1, got {args.threads}")
        return 2
    configure_process(ranks_in_process=args.threads)
    waits = min(args.timeout, threading.TIMEOUT_MAX) if args.timeout > 0 else threading.TIMEOUT_MAX  # 0: forever
    try:
        records = collectives.spawn(lambda comm: run(args, comm), args.threads, timeout=waits)
    except collectives.RankError as exc:
        if not isinstance(exc.__cause__, NonFiniteError):
            raise
        _report(exc.__cause__)
        return 1
    return 2 if "error" in records[0] else 0


def _mpi_exit(code):
    """Finalize MPI ourselves before a clean non-zero exit: every rank has already agreed to
    stop, so ``python -m mpi4py`` need not MPI_Abort (which prints one line per rank)."""
    from mpi4py import MPI
    MPI.Finalize()
    return code


def _report(message):
    print(f"strategies.train: error: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
