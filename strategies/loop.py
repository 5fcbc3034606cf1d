"""The training loop of the runner: set up, train epoch by epoch, evaluate, record.

    record = run(args, comm)          # the same on every rank; {"error": ...} if any rank can't start

Every step draws the same global batch on every rank and each rank keeps its own rows of it
(strategies/loader.py, ``strategy.local_rows``). Per epoch, rank 0 prints the mean training
loss (MATH F8: the sum of the ranks' loss sums over the sum of their rows), the test accuracy of
the strategy's whole model, the consensus distance (replicated strategies), and, cumulative
since the start, the training time, samples/s and MB sent per rank.
"""
import sys
import time

import numpy
from tqdm import tqdm

import collectives
import engine.functional as F
from engine import data, kernels, manual_seed, models, nn, optim
from strategies import checkpoint, record as records
from strategies.loader import RankLoader
from strategies.masks import prune_replicas
from strategies.messages import agree
from strategies.nan_guard import NanGuard
from strategies.parameters import cast_model
from strategies.registry import STRATEGIES

OPTIMIZERS = {"sgd": lambda params, a: optim.SGD(params, lr=a.lr, momentum=a.momentum),
              "adam": lambda params, a: optim.Adam(params, lr=a.lr)}


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


def sum_over_ranks(comm, *values):
    """The sum over ranks of each float in ``values`` (one small all-reduce)."""
    return collectives.allreduce(comm, numpy.array(values, numpy.float64), "tree", "sum", check=False)


def train_epoch(strategy, optimizer, loader, steps, bar=None, resume=None, after_step=None):
    """``steps`` steps over ``loader`` (at most one pass); returns this rank's (sum of
    per-sample losses, rows scored). ``bar``: a tqdm bar, or None. ``resume``: a checkpoint's
    Position inside this epoch: its ``done`` steps are skipped, its loss sums and the
    strategy's state in the epoch (which begin_epoch resets) put back. ``after_step(done,
    loss_sum, rows)``: called after each step (the checkpoints)."""
    strategy.begin_epoch(loader, steps)
    done, loss_sum, rows = 0, 0.0, 0
    if resume is not None:
        done, loss_sum, rows = resume.done, resume.loss_sum, resume.rows
        strategy.load_state_dict(resume.strategy)
    for _, (xb, yb) in zip(range(steps - done), loader.steps_from(done)):   # this rank's rows
        result = strategy.train_step(optimizer, F.cross_entropy, xb, yb)
        loss_sum, rows, done = loss_sum + result.loss_sum, rows + result.rows, done + 1
        if bar is not None:
            bar.update()
        if after_step is not None:
            after_step(done, loss_sum, rows)
    return loss_sum, rows


def epoch_steps(batches, steps_so_far, max_steps=None):
    """How many steps the next epoch takes: all its batches, or what is left of ``max_steps``."""
    return batches if not max_steps else min(batches, max_steps - steps_so_far)


def setup(args, comm):
    """The model (the same theta_0 on every rank: A1), the strategy and its optimiser (None
    on a rank that optimises nothing). With --prune S, the model's weights are masked first
    (strategies/masks.py: the same mask on every replica, checked); the mask's gradient hooks
    keep them zero through every step (engine/compress/pruning.py), ``strategy.pruning`` holds it."""
    manual_seed(args.seed)
    model = cast_model(models.build(args.model), args.dtype)
    pruning = prune_replicas(model, comm, args.prune, args.prune_scope) if args.prune else None
    strategy = STRATEGIES[args.strategy].from_args(model, comm, args)
    strategy.pruning = pruning
    strategy.nan_guard = NanGuard(args.on_nan, comm, strategy.guarded_parameters())
    params = strategy.parameters()
    optimizer = OPTIMIZERS[args.optimizer](params, args) if params else None
    return model, strategy, optimizer


def run(args, comm, dataset=None, check=None):
    """Train with ``args`` on ``comm``; returns the record (the same dict on every rank but for
    its own timings and the hash of its own whole model), or
    ``{"error": message}`` on every rank when any rank could not start. ``dataset``: the four
    arrays, already loaded (the benchmark passes them to avoid reloading per run). ``check``:
    check(args, comm, n_train) -> a reason this rank cannot start, or None (the command line's)."""
    say = print if comm.rank == 0 and not args.quiet else (lambda *a, **k: None)
    problem = None
    try:
        dataset = dataset or load_data(args)
        problem = check(args, comm, len(dataset[0])) if check else None
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported, never raised alone
        problem = f"{type(exc).__name__}: {exc}"
    first = agree(comm, problem)
    if first is not None:
        if comm.rank == first:
            print(f"strategies.train: error (rank {first} of {comm.size}): {problem}", file=sys.stderr, flush=True)
        return {"error": problem or f"rank {first} could not start"}

    X_train, y_train, X_test, y_test = dataset
    metrics_comm = comm.split(0, comm.rank, name="metrics", counted=False)  # kept out of the counters
    compile_seconds = kernels.compile_all(args.dtype)      # Numba compiles here, not in epoch 1
    model, strategy, optimizer = setup(args, comm)
    X_train, X_test = model_inputs(model, X_train), model_inputs(model, X_test)
    setup_bytes = comm.counters.bytes_sent
    comm.reset_counters()
    n_params = sum(p.numel() for p in model.parameters())
    B = args.batch_size
    order = RankLoader(X_train, y_train, B, strategy.local_rows(B), seed=args.seed)
    data_ranks = STRATEGIES[args.strategy].data_ranks(comm.size, args)
    say(f"{args.strategy} on {comm.size} rank(s): {args.model} ({n_params:,} parameters, {args.dtype}), "
        f"{args.dataset} {len(X_train):,} samples, global batch {B} = {data_ranks} x {B // data_ranks}, "
        f"{len(order)} steps per epoch, {args.optimizer} lr {args.lr}")
    progress = comm.rank == 0 and not args.quiet
    keeper = checkpoint.Checkpoints(args, comm, metrics_comm, strategy, optimizer) if args.checkpoint_dir else None
    try:
        position = keeper.resume(say) if keeper and args.resume else None
    except checkpoint.CheckpointError as exc:
        if comm.rank == 0:
            print(f"strategies.train: error: --resume: {exc}", file=sys.stderr, flush=True)
        return {"error": f"--resume: {exc}"}
    epochs, train_seconds, steps = ([], 0.0, 0) if position is None else (
        position.epochs, position.train_seconds, position.steps - position.done)
    start = time.perf_counter()
    for epoch in range(position.epoch if position else 1, args.epochs + 1):
        this_epoch = epoch_steps(len(order), steps, args.max_steps)
        if this_epoch <= 0:                                  # resumed at --max-steps already
            break
        resume = position if position and position.epoch == epoch and position.done else None
        bar = tqdm(total=this_epoch, initial=resume.done if resume else 0, desc=f"epoch {epoch}",
                   leave=False, file=sys.stderr) if progress else None
        tic, saved_before = time.perf_counter(), keeper.seconds if keeper else 0.0

        def save_between_steps(done, loss_sum, rows):
            if keeper and done < this_epoch and keeper.due_between_steps(steps + done):
                keeper.save(checkpoint.Position(epoch, done, steps + done, loss_sum, rows, epochs,
                                                train_seconds + time.perf_counter() - tic))

        order.set_epoch(epoch - 1)                         # the order is a function of (seed, epoch)
        loss_sum, rows = train_epoch(strategy, optimizer, order, this_epoch, bar, resume, save_between_steps)
        steps += this_epoch
        strategy.drain()                                   # nothing in flight past this point
        train_seconds += time.perf_counter() - tic - ((keeper.seconds - saved_before) if keeper else 0.0)
        if bar is not None:
            bar.close()
        total_loss, total_rows = sum_over_ranks(metrics_comm, loss_sum, rows)
        epoch_loss = float(total_loss / total_rows)          # F8: mean over the epoch's samples
        accuracy = strategy.evaluate(X_test, y_test, metrics_comm)
        consensus = strategy.consensus_distance(metrics_comm)
        sent = float(sum_over_ranks(metrics_comm, comm.counters.bytes_sent)[0]) / comm.size
        epochs.append(dict(epoch=epoch, steps=steps, loss=epoch_loss, test_accuracy=accuracy,
                           consensus_distance=consensus, train_seconds=train_seconds,
                           wall_seconds=time.perf_counter() - start, bytes_sent_per_rank=sent))
        distance = "-" if consensus is None else f"{consensus:.2e}"
        say(f"  epoch {epoch:>3} | loss {epoch_loss:.4f} | test acc {accuracy:.4f} | consensus {distance}"
            f" | cumulative: {train_seconds:6.2f} s, {steps * B / train_seconds:8,.0f} samples/s,"
            f" {sent / 1e6:8.2f} MB sent/rank")
        if keeper and this_epoch == len(order) and keeper.due_at_epoch_end(steps):   # "epoch + 1, step 0"
            keeper.save(checkpoint.Position(epoch + 1, 0, steps, 0.0, 0, epochs, train_seconds))
        if args.max_steps and steps >= args.max_steps:
            break
    return finish(args, comm, metrics_comm, strategy, dict(
        steps=steps, epochs=epochs, n_params=n_params, setup_bytes=setup_bytes, start=start,
        train_seconds=train_seconds, compile_seconds=compile_seconds, checkpoints=keeper and dict(
            written=keeper.written, seconds=keeper.seconds, directory=keeper.directory,
            resumed_from_step=position.steps if position else None)), say)


def finish(args, comm, metrics_comm, strategy, run_state, say):
    """The record of a finished run (strategies/record.py), written by rank 0."""
    s = run_state
    steps, epochs, B = s["steps"], s["epochs"], args.batch_size
    final = strategy.eval_model(metrics_comm)
    sent, messages, setup, comm_seconds = sum_over_ranks(
        metrics_comm, comm.counters.bytes_sent, comm.counters.messages_sent, s["setup_bytes"],
        strategy.comm_seconds) / comm.size
    traffic = records.traffic(comm, strategy, steps, metrics_comm)
    record = dict(strategy=args.strategy, world_size=comm.size, model=args.model, dataset=args.dataset,
                  n_params=s["n_params"], config=dict(vars(args)), epochs=epochs,
                  final_loss=epochs[-1]["loss"], final_test_accuracy=epochs[-1]["test_accuracy"],
                  steps=steps, samples=steps * B, train_seconds=s["train_seconds"],
                  compile_seconds=s["compile_seconds"],
                  wall_seconds=time.perf_counter() - s["start"], samples_per_second=steps * B / s["train_seconds"],
                  bytes_sent_per_rank=float(sent), messages_sent_per_rank=float(messages),
                  setup_bytes_per_rank=float(setup), bytes_sent_per_rank_per_step=float(sent) / steps,
                  formula_bytes_per_rank_per_step=records.mean_formula_per_step(traffic["roles"]),
                  roles=traffic["roles"], communicators=traffic["communicators"],
                  comm_seconds_per_rank=float(comm_seconds), comm_share=float(comm_seconds) / s["train_seconds"],
                  params_sha256=records.params_sha256(final), loadavg=records.loadavg(),
                  sparsity=strategy.pruning.sparsity() if strategy.pruning else None,
                  checkpoints=s["checkpoints"], nan_steps_skipped=strategy.nan_guard.skipped,
                  **strategy.report(metrics_comm))
    records.write_outputs(record, final, args, comm.rank)
    if args.out:
        say(f"record written to {args.out}")
    return record
