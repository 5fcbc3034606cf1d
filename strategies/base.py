"""What a strategy is: what each rank does in one training step, and how to look at the model.

    strategy = STRATEGIES[name].from_args(model, comm, args)    # the whole model, built on every rank
    optimizer = SGD(strategy.parameters()) if strategy.parameters() else None
    for xb, yb in RankLoader(X, y, B, strategy.local_rows(B)):  # this rank's rows (maybe none)
        result = strategy.train_step(optimizer, F.cross_entropy, xb, yb)   # StepResult
    accuracy = strategy.evaluate(X_test, y_test, metrics_comm)

What a rank does is explicit, so that ranks may differ (a parameter server, a pipeline stage):

    role                  "worker", "server", "stage 2", ...: what this rank is
    local_rows(B)         which rows of each global batch of B it trains on (possibly none)
    parameters()          the parameters it owns and optimises (possibly none: no optimiser)
    replicated            True when every rank holds a whole copy of theta (dp, local SGD,
                          gossip): then evaluation and the consensus distance have defaults
    train_step(...)       one step; returns StepResult(loss summed over the rows it scored,
                          how many rows that was: 0 on a rank that computes no loss)
    eval_model(comm)      the whole model, on every rank (what is evaluated, saved and hashed)
    bytes_per_step()      the traffic formula, {role: bytes each rank of that role sends per
                          step}, seeing the model and the flags; None: not modelled
    begin_epoch(loader, steps)  an epoch of ``steps`` global batches starts (a parameter
                          server's schedule hands out chunks of ``loader``'s batches)
    drain(), report(comm)  finish what is in flight when training pauses; extra record entries
    state_attributes      what moves from step to step besides parameters and optimiser (the
                          checkpoints save and load it: strategies/checkpoint/stateful.py)
    checkpoint_between_steps  False when messages are in flight between steps (an async
                          server): then checkpoints wait for the end of an epoch
    resizable             True when every rank holds the same state (dp): a checkpoint may
                          resume on another world size
    add_arguments(parser), check(world_size, args), from_args(model, comm, args): its own
                          flags, the reasons it cannot run, how the runner builds it

The default ``train_step`` is one step of MATH A1 on a replica:

    loss = loss_fn(model(xb), yb)        F9: this rank's mean over its |B_k| rows
    loss.backward()                      F6
    self.after_backward()                DataParallel: g = (1/K) sum_k g_k          (F10)
    optimizer.step()                     F7
    self.after_step()                    LocalSGD: every H steps theta = mean theta_i (F11)
                                         Gossip:   theta_i = mean of the neighbourhood (A6)

Two communicators, two purposes. ``self.comm`` carries the training traffic, so its
counters are what a strategy costs (bytes per rank per step, compared with the formula).
Metrics, evaluation and the consensus distance go over a second communicator that counts on
no parent (the runner's ``metrics_comm``), so looking at the model never shows up in what
training paid for.
"""
import time
from dataclasses import dataclass

import numpy

import collectives
from engine import Tensor, no_grad
from strategies.checkpoint.stateful import Stateful
from strategies.parameters import flat_parameters


@dataclass(frozen=True)
class StepResult:
    """What one training step returns on one rank (the runner sums both over ranks: F8)."""

    loss_sum: float   # sum over the rows this rank scored of the per-sample loss
    rows: int         # how many rows that was (0 on a rank that computes no loss)


class Strategy(Stateful):
    """Base class: one rank's view of a training strategy (see the module docstring)."""

    name = "base"
    replicated = True
    state_attributes = ("steps",)
    checkpoint_between_steps = True
    resizable = False
    min_world_size = 1
    max_world_size = None

    def __init__(self, model, comm):
        self.model, self.comm = model, comm
        self.role = "worker"
        self.steps = 0
        self.comm_seconds = 0.0    # time inside this strategy's communication (see timed below)
        self.pruning = None        # the runner's --prune masks (strategies/masks.py), or None
        self.nan_guard = None      # the runner's --on-nan guard (strategies/nan_guard.py), or None

    # -- what the runner needs before anything runs (class methods: no model yet) -----------
    @classmethod
    def add_arguments(cls, parser):
        """Add this strategy's own flags to ``parser`` (an argparse group named after it)."""

    @classmethod
    def check(cls, world_size, args):
        """A reason why this strategy cannot run with ``args`` on ``world_size`` ranks, or None.

        The runner calls it on every rank before anything is loaded or sent (fail fast)."""
        if world_size < cls.min_world_size:
            return (f"--strategy {cls.name} needs at least {cls.min_world_size} ranks, "
                    f"launched on {world_size} (try: mpirun -n 4 python -m mpi4py -m strategies.train ...)")
        if cls.max_world_size is not None and world_size > cls.max_world_size:
            return f"--strategy {cls.name} runs on at most {cls.max_world_size} rank(s), launched on {world_size}"
        data_ranks = cls.data_ranks(world_size, args)
        if args.batch_size % data_ranks:
            return (f"--batch-size {args.batch_size} is the GLOBAL batch and must divide evenly over "
                    f"the {data_ranks} data-parallel ranks (e.g. {data_ranks * max(1, args.batch_size // data_ranks)})")
        return None

    @classmethod
    def data_ranks(cls, world_size, args):
        """How many ranks split each global batch (a parameter server: world_size - servers)."""
        return world_size

    @classmethod
    def from_args(cls, model, comm, args):
        """Build the strategy from the runner's parsed flags (each subclass picks its own)."""
        return cls(model, comm)

    # -- this rank's part --------------------------------------------------------------------
    def parameters(self):
        """The parameters this rank's optimiser updates ([]: this rank optimises nothing)."""
        return self.model.parameters()

    def guarded_parameters(self):
        """[(name, parameter)] whose gradients this rank computes (what --on-nan checks)."""
        return self.model.named_parameters()

    def local_rows(self, global_batch_size):
        """The rows of each global batch this rank trains on: its contiguous 1/K share.

            global batch of B = 8 on K = 4 ranks:   rows 0 1 | 2 3 | 4 5 | 6 7
                                                        rank 0  rank 1  ...
        Equal shares make the mean of the ranks' mean gradients the mean over all B rows (F10).
        """
        b = global_batch_size // self.comm.size
        return slice(self.comm.rank * b, (self.comm.rank + 1) * b)

    # -- one step ---------------------------------------------------------------------------
    def train_step(self, optimizer, loss_fn, xb, yb):
        """One step on this rank's rows (xb, yb) of a replica; returns a StepResult."""
        loss = loss_fn(self.model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        value = loss.item()
        if self.nan_guard is not None and self.nan_guard.drop_step(value, self.steps + 1):
            optimizer.zero_grad()                     # --on-nan skip: every rank drops it
            return StepResult(0.0, 0)
        self.after_backward()
        optimizer.step()
        self.steps += 1
        self.after_step()
        return StepResult(value * len(yb), len(yb))

    def after_backward(self):
        """Called once the local gradients are in ``p.grad`` (DataParallel averages them here)."""

    def after_step(self):
        """Called after the optimiser step and ``self.steps += 1`` (LocalSGD, Gossip average here)."""

    def begin_epoch(self, loader, steps):
        """Called on every rank before an epoch of ``steps`` train_step calls over ``loader``
        (a RankLoader: ``loader.take(step, rows)`` reads any rows of the epoch's batches).
        Default: nothing to prepare."""

    def drain(self):
        """Called on every rank whenever training pauses (the end of each epoch, the end of the
        run), before anything collective over the metrics communicator: complete every message
        still in flight (a parameter server answering late pushes). Default: nothing in flight."""

    def report(self, metrics_comm):
        """Extra entries of the run's record, the same dict on every rank (collective over
        ``metrics_comm``): a server's staleness histogram, per-role time split, ... Default: {}."""
        return {}

    # -- looking at the model ---------------------------------------------------------------
    def eval_model(self, metrics_comm):
        """The whole model, on every rank: here the replica (they agree under dp). LocalSGD and
        Gossip return the average theta_bar; a strategy whose ranks hold parts must assemble it
        (strategies.parameters.assembled_copy)."""
        if not self.replicated:
            raise NotImplementedError(f"{type(self).__name__} splits the model over ranks: "
                                      "it must define eval_model (see assembled_copy)")
        return self.model

    def evaluate(self, X, y, metrics_comm):
        """Accuracy of ``eval_model`` on (X, y): each rank scores 1/K of the rows, then a sum."""
        model = self.eval_model(metrics_comm)
        n, k, r = len(X), metrics_comm.size, metrics_comm.rank
        rows = slice(r * n // k, (r + 1) * n // k)        # every row once, shares differ by <= 1
        with no_grad():
            predicted = model(Tensor(X[rows])).argmax(axis=1).numpy()     # (n_r,)
        counts = numpy.array([(predicted == y[rows]).sum(), len(predicted)], numpy.int64)
        correct, total = collectives.allreduce(metrics_comm, counts, "tree", "sum", check=False)
        return float(correct / total)

    def consensus_distance(self, metrics_comm):
        """sqrt((1/K) sum_i ||theta_i - theta_bar||^2) over the replicas: 0 when they agree.
        None where ranks hold different parts of the model instead of replicas."""
        if not self.replicated:
            return None
        theta = flat_parameters(self.model)                               # (n,)
        mean = collectives.allreduce(metrics_comm, theta, "ring", "mean", check=False)
        squared = numpy.array([float(((theta - mean) ** 2).sum())])
        return float(numpy.sqrt(collectives.allreduce(metrics_comm, squared, "tree", "mean",
                                                      check=False)[0]))

    # -- what it costs, by formula ------------------------------------------------------------
    def bytes_per_step(self):
        """{role: bytes each rank of that role sends per training step}, by formula; None: not
        modelled. A rank may name its own role only (a pipeline stage knows its own activation
        sizes); the record collects every rank's. The default: no communication."""
        return {self.role: 0.0}

    def bytes_for_steps(self, steps):
        """{role: bytes each rank of that role sends in ``steps`` steps} (what the counters must
        show); None: not modelled."""
        per_step = self.bytes_per_step()
        return None if per_step is None else {role: steps * b for role, b in per_step.items()}

    def model_bytes(self):
        """n: bytes of the whole model's parameters (what a gradient all-reduce moves)."""
        return sum(p.data.nbytes for p in self.model.parameters())


class Single(Strategy):
    """The reference every strategy is tested against: one rank, the whole global batch."""

    name = "single"
    max_world_size = 1

    def local_rows(self, global_batch_size):
        return slice(0, global_batch_size)


def timed(method):
    """Decorator: add the wall time of a strategy's communication method to ``comm_seconds``
    (what the benchmark reports as the communication share of a step)."""
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.comm_seconds += time.perf_counter() - start
    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper
