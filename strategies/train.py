"""The strategy runner: every strategy, the same data, model, seed and flags; one JSON record.

    python -m strategies.train                                            # 1 process, dp on 1 rank
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp --algorithm ring
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy local-sgd --period 8 --out ls.json
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy gossip --topology ring
    python -m strategies.train --threads 4 --strategy dp                 # 4 ranks as threads, no MPI

(``python -m mpi4py`` makes an exception on one rank abort every rank instead of leaving the
others waiting.) --batch-size is the GLOBAL batch B: each of the K ranks trains on B/K rows of
it, so runs on different K see the same batches and, for dp, compute the same update (F10).

Every step draws the same global batch on every rank and each rank keeps its own rows of it
(``strategies.base.RankLoader``, ``strategy.local_rows``): rank k of K trains on rows
k B/K .. (k + 1) B/K - 1 of global batch s, whose order is fixed by (seed, epoch).

Per epoch, rank 0 prints the mean training loss (F8, averaged over ranks with an all-reduce),
the test accuracy of the strategy's model (theta_bar for local SGD and gossip), the
consensus distance, the wall time and the bytes sent per rank. ``--out`` writes the record:
per-epoch loss / accuracy / time / bytes, samples/s, and the bytes per rank per step measured
beside the formula of strategies/traffic.py.

A new strategy plugs in with one entry in strategies/registry.py (see strategies/base.py for
the interface); its own flags, if any, go in ``build_parser`` below.
"""
import argparse
import hashlib
import json
import os
import sys
import time

# The engine before NumPy: under mpirun it asks BLAS for one thread per rank (engine/threads.py).
from engine import data, manual_seed, models, nn, optim  # noqa: I001
import engine.functional as F
from engine.threads import launched_by_mpi, set_blas_threads

import numpy

import collectives
from strategies.base import RankLoader, cast_model
from strategies.data_parallel import DEFAULT_BUCKET_BYTES
from strategies.registry import STRATEGIES

ALGORITHMS = [name.replace("_", "-") for name in collectives.ALGORITHMS]   # collectives' names, with -
OPTIMIZERS = {"sgd": lambda params, a: optim.SGD(params, lr=a.lr, momentum=a.momentum),
              "adam": lambda params, a: optim.Adam(params, lr=a.lr)}


class UsageError(Exception):
    """A bad command line: reported once, by the runner's agreement, never by argparse's exit."""


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
    p = _Parser(prog="python -m strategies.train", quiet=quiet, description=__doc__.split("\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="dp")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ring", help="the all-reduce (dp, local-sgd)")
    p.add_argument("--bucket-bytes", type=int, default=DEFAULT_BUCKET_BYTES, help="dp, local-sgd")
    p.add_argument("--period", type=int, default=8, help="local-sgd: H local steps between averages")
    p.add_argument("--topology", default="ring", help="gossip: ring or complete")
    p.add_argument("--model", choices=sorted(models.MODELS), default="mlp")
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist",
                   help="mnist without --data-path is the bundled 4,000 / 1,000 subset")
    p.add_argument("--data-path", default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--batch-size", type=int, default=64, help="the GLOBAL batch, split over the ranks")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="without mpirun: run this many ranks as threads")
    p.add_argument("--out", default=None, help="write the JSON record here (rank 0)")
    p.add_argument("--save-params", default=None, help="write the final parameters here (.npz, rank 0)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def parse_args(argv=None, quiet=False):
    """The flags as a Namespace (``algorithm`` in collectives' spelling); raises UsageError."""
    args = build_parser(quiet).parse_args(argv)
    args.algorithm = args.algorithm.replace("-", "_")
    return args


def check(args, comm, n_train):
    """The reason this run cannot start on this rank, or None. Cheap: nothing sent or trained."""
    for flag, value, least in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                               ("--max-steps", args.max_steps or 1, 1), ("--seed", args.seed, 0)):
        if value < least:
            return f"{flag} must be >= {least}, got {value}"
    if args.lr <= 0 or args.momentum < 0:
        return f"--lr must be > 0 and --momentum >= 0, got {args.lr} and {args.momentum}"
    if args.algorithm == "mpi" and not isinstance(comm, collectives.MPIComm):
        return "--algorithm mpi is MPI's own Allreduce: run under mpirun (the threads world has none)"
    if args.batch_size > n_train:
        return f"--batch-size {args.batch_size} is larger than the {n_train} training samples"
    if args.out and comm.rank == 0 and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        return f"--out {args.out}: no such directory"
    return STRATEGIES[args.strategy].check(comm.size, args)


def agree(comm, problem):
    """Every rank learns whether any rank has a problem; returns the first such rank, or None.

    One all-reduce of one integer (op min of "my rank if I have a problem, else K"), so a rank
    whose file is missing makes every rank stop, with one message, instead of leaving the others
    waiting in their first all-reduce."""
    mine = numpy.array([comm.rank if problem else comm.size], numpy.int64)
    first = int(collectives.allreduce(comm, mine, "tree", "min", check=False)[0])
    return None if first == comm.size else first


def load_data(args):
    """(X_train, y_train, X_test, y_test), pixels (x - 0.5) / 0.5 (MATH E2), in --dtype."""
    X_train, y_train, X_test, y_test = data.load_dataset(args.dataset, args.data_path)
    return ((X_train - 0.5) / 0.5).astype(args.dtype), y_train, ((X_test - 0.5) / 0.5).astype(args.dtype), y_test


def model_inputs(model, X):
    """X reshaped to what the model reads: rows (n, 784) for affine layers; images (n, C, 28, 28)
    when the first layer is a convolution with C input channels (lenet5)."""
    first = model[0] if isinstance(model, nn.Sequential) and len(model) else model
    channels = getattr(first, "in_channels", None)
    if channels is None:
        return X
    side = int(round((X.shape[1] // channels) ** 0.5))
    return X.reshape(len(X), channels, side, side)                   # (n, C, H, W)


def mean_over_ranks(comm, *values):
    """The mean over ranks of each float in ``values`` (one small all-reduce)."""
    return collectives.allreduce(comm, numpy.array(values, numpy.float64), "tree", "mean", check=False)


def params_sha256(model):
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(numpy.ascontiguousarray(p.data).tobytes())
    return digest.hexdigest()


def train_epoch(strategy, optimizer, loader, steps, max_steps=None, bar=None):
    """One pass over ``loader`` (or up to ``max_steps`` steps in all); returns this rank's
    (sum of per-sample losses, samples, steps so far). ``bar``: a label for a progress bar on stderr."""
    loss_sum, count = 0.0, 0
    for i, (xb, yb) in enumerate(loader):                      # this rank's B/K rows of a global batch
        loss = strategy.train_step(optimizer, F.cross_entropy, xb, yb)
        loss_sum, count, steps = loss_sum + loss * len(yb), count + len(yb), steps + 1
        if bar and ((i + 1) % max(1, len(loader) // 30) == 0 or i + 1 == len(loader)):
            done = 30 * (i + 1) // len(loader)
            print(f"\r  {bar} [{'#' * done}{'.' * (30 - done)}] {i + 1}/{len(loader)}", end="",
                  file=sys.stderr, flush=True)
        if max_steps and steps >= max_steps:
            break
    if bar:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    return loss_sum, count, steps


def run(args, comm, dataset=None):
    """Train with ``args`` on ``comm``; returns the record (the same dict on every rank), or
    ``{"error": message}`` on every rank when any rank could not start. ``dataset``: the four
    arrays, already loaded (the benchmark passes them to avoid reloading per run)."""
    say = print if comm.rank == 0 and not args.quiet else (lambda *a, **k: None)
    problem = None
    try:
        dataset = dataset or load_data(args)
        problem = check(args, comm, len(dataset[0]))
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported, never raised alone
        problem = f"{type(exc).__name__}: {exc}"
    first = agree(comm, problem)
    if first is not None:
        if comm.rank == first:
            print(f"strategies.train: error (rank {first} of {comm.size}): {problem}", file=sys.stderr, flush=True)
        return {"error": problem or f"rank {first} could not start"}

    X_train, y_train, X_test, y_test = dataset
    metrics_comm = comm.split(0, comm.rank)     # evaluation traffic, kept out of the counters
    manual_seed(args.seed)                      # the same theta_0 on every rank (A1)
    model = cast_model(models.build(args.model), args.dtype)
    X_train, X_test = model_inputs(model, X_train), model_inputs(model, X_test)
    strategy = STRATEGIES[args.strategy].from_args(model, comm, args)
    optimizer = OPTIMIZERS[args.optimizer](strategy.parameters(), args)
    setup_bytes = comm.counters.bytes_sent
    comm.counters.reset()
    n_params = sum(p.numel() for p in model.parameters())
    B, rows = args.batch_size, strategy.local_rows(args.batch_size)
    n = len(X_train)
    order = RankLoader(X_train, y_train, B, rows, seed=args.seed)
    data_ranks = STRATEGIES[args.strategy].data_ranks(comm.size)
    say(f"{args.strategy} on {comm.size} rank(s): {args.model} ({n_params:,} parameters, {args.dtype}), "
        f"{args.dataset} {n:,} samples, global batch {B} = {data_ranks} x {B // data_ranks}, "
        f"{len(order)} steps per epoch, {args.optimizer} lr {args.lr}")
    progress = comm.rank == 0 and not args.quiet and sys.stderr.isatty()
    epochs, train_seconds, steps = [], 0.0, 0
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        tic = time.perf_counter()
        loss_sum, count, steps = train_epoch(strategy, optimizer, order, steps, args.max_steps,
                                             f"epoch {epoch}" if progress else None)
        train_seconds += time.perf_counter() - tic
        total_loss, total_count = collectives.allreduce(metrics_comm, numpy.array([loss_sum, count]),
                                                        "tree", "sum", check=False)
        epoch_loss = float(total_loss / total_count)          # F8: mean over the epoch's samples
        accuracy = strategy.evaluate(X_test, y_test, metrics_comm)
        consensus = strategy.consensus_distance(metrics_comm)
        sent = float(mean_over_ranks(metrics_comm, comm.counters.bytes_sent)[0])
        epochs.append(dict(epoch=epoch, steps=steps, loss=epoch_loss, test_accuracy=accuracy,
                           consensus_distance=consensus, train_seconds=train_seconds,
                           wall_seconds=time.perf_counter() - start, bytes_sent_per_rank=sent))
        say(f"  epoch {epoch:>3} | loss {epoch_loss:.4f} | test acc {accuracy:.4f} | consensus {consensus:.2e}"
            f" | {train_seconds:6.2f} s | {steps * B / train_seconds:8,.0f} samples/s | {sent / 1e6:8.2f} MB sent/rank")
        if args.max_steps and steps >= args.max_steps:
            break

    final = strategy.eval_model(metrics_comm)
    sent, messages, setup, comm_seconds = mean_over_ranks(metrics_comm, comm.counters.bytes_sent,
                                                          comm.counters.messages_sent, setup_bytes,
                                                          strategy.comm_seconds)
    itemsize = numpy.dtype(args.dtype).itemsize
    record = dict(strategy=args.strategy, world_size=comm.size, model=args.model, dataset=args.dataset,
                  n_params=n_params, config={k: v for k, v in vars(args).items()}, epochs=epochs,
                  final_loss=epochs[-1]["loss"], final_test_accuracy=epochs[-1]["test_accuracy"],
                  steps=steps, samples=steps * B, train_seconds=train_seconds,
                  wall_seconds=time.perf_counter() - start, samples_per_second=steps * B / train_seconds,
                  bytes_sent_per_rank=float(sent), messages_sent_per_rank=float(messages),
                  setup_bytes_per_rank=float(setup), bytes_sent_per_rank_per_step=float(sent) / steps,
                  formula_bytes_per_rank_per_step=_per_step(STRATEGIES[args.strategy].bytes_for_steps(
                      steps, n_params, itemsize, comm.size, args), steps),
                  comm_seconds_per_rank=float(comm_seconds), comm_share=float(comm_seconds) / train_seconds,
                  params_sha256=params_sha256(final), loadavg=list(os.getloadavg()))
    if comm.rank == 0 and args.save_params:
        numpy.savez(args.save_params, **final.state_dict())
    if comm.rank == 0 and args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
        say(f"record written to {args.out}")
    return record


def _per_step(total, steps):
    return None if total is None else total / steps


def main(argv=None):
    """Entry point: under mpirun one rank per process; otherwise --threads ranks in this process."""
    if launched_by_mpi():
        comm = collectives.world()
        try:
            args = parse_args(argv, quiet=comm.rank != 0)
        except UsageError as exc:              # the same argv everywhere: every rank gets here
            if agree(comm, str(exc)) == comm.rank:
                _report(exc)
            return _mpi_exit(2)
        return _mpi_exit(2) if "error" in run(args, comm) else 0
    try:
        args = parse_args(argv)
    except UsageError as exc:
        _report(exc)
        return 2
    if args.threads < 1:
        _report(f"--threads must be >= 1, got {args.threads}")
        return 2
    if args.threads > 1:
        set_blas_threads(1)
    records = collectives.spawn(lambda comm: run(args, comm), args.threads, timeout=300)
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
