"""What every strategy is: "one training step on a batch" plus "the parameters to evaluate".

    strategy = DataParallel(model, comm)                    # or LocalSGD, Gossip, Single ...
    for xb, yb in batches:                                  # this rank's rows of a global batch
        loss = strategy.train_step(opt, F.cross_entropy, xb, yb)
    accuracy = strategy.evaluate(X_test, y_test, metrics_comm)

The interface is kept at that level on purpose. Data parallelism fits "wrap a model and act
after backward / after the optimiser step" (the two hooks below), but a parameter server or a
pipeline does not: a pipeline stage holds a slice of the model and exchanges activations
inside the step, a server rank holds no data at all. Each of them overrides ``train_step``
(and ``local_rows`` / ``evaluate`` where the data or the model is split differently) and
keeps the runner, the benchmark and the JSON record unchanged.

The default ``train_step`` is one step of MATH A1 on this rank:

    loss = loss_fn(model(xb), yb)        F9: this rank's mean over its |B_k| rows
    loss.backward()                      F6
    self.after_backward()                DataParallel: g = (1/K) sum_k g_k          (F10)
    optimizer.step()                     F7
    self.after_step()                    LocalSGD: every H steps theta = mean theta_i (F11)
                                         Gossip:   theta_i = mean of the neighbourhood (A6)

Two communicators, two purposes. ``self.comm`` carries the training traffic, so its
counters are what a strategy costs (bytes per rank per step, compared with a formula).
Metrics, evaluation and the consensus distance go over a second communicator made with
``comm.split`` (the runner's ``metrics_comm``), so looking at the model never shows up in
what training paid for.
"""
import copy
import time

# The engine before NumPy: under mpirun it asks BLAS for one thread per rank (engine/threads.py).
from engine import Tensor, data, no_grad  # noqa: I001

import numpy

import collectives


class Strategy:
    """Base class: one rank's view of a training strategy (see the module docstring)."""

    name = "base"
    min_world_size = 1
    max_world_size = None

    def __init__(self, model, comm):
        self.model, self.comm = model, comm
        self.steps = 0
        self.comm_seconds = 0.0    # time inside this strategy's communication (see timed below)

    # -- what the runner needs --------------------------------------------------------------
    @classmethod
    def check(cls, world_size, args):
        """A reason why this strategy cannot run with ``args`` on ``world_size`` ranks, or None.

        The runner calls it on every rank before anything is loaded or sent (fail fast)."""
        if world_size < cls.min_world_size:
            return (f"--strategy {cls.name} needs at least {cls.min_world_size} ranks, "
                    f"launched on {world_size} (try: mpirun -n 4 python -m mpi4py -m strategies.train ...)")
        if cls.max_world_size is not None and world_size > cls.max_world_size:
            return f"--strategy {cls.name} runs on at most {cls.max_world_size} rank(s), launched on {world_size}"
        data_ranks = cls.data_ranks(world_size)
        if args.batch_size % data_ranks:
            return (f"--batch-size {args.batch_size} is the GLOBAL batch and must divide evenly over "
                    f"the {data_ranks} data-parallel ranks (e.g. {data_ranks * max(1, args.batch_size // data_ranks)})")
        return None

    @classmethod
    def data_ranks(cls, world_size):
        """How many ranks split each global batch (a parameter server would say world_size - 1)."""
        return world_size

    @classmethod
    def from_args(cls, model, comm, args):
        """Build the strategy from the runner's parsed flags (each subclass picks its own)."""
        return cls(model, comm)

    def parameters(self):
        """The parameters this rank's optimiser updates (a pipeline stage: only its own)."""
        return self.model.parameters()

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
        """One step on this rank's rows (xb, yb); returns this rank's loss (a float)."""
        loss = loss_fn(self.model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        self.after_backward()
        optimizer.step()
        self.steps += 1
        self.after_step()
        return loss.item()

    def after_backward(self):
        """Called once the local gradients are in ``p.grad`` (DataParallel averages them here)."""

    def after_step(self):
        """Called after the optimiser step and ``self.steps += 1`` (LocalSGD, Gossip average here)."""

    # -- looking at the model ---------------------------------------------------------------
    def eval_model(self, metrics_comm):
        """The model to evaluate: the replicas agree here; LocalSGD and Gossip average them."""
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
        """sqrt((1/K) sum_i ||theta_i - theta_bar||^2): 0 when every replica agrees."""
        theta = flat_parameters(self.model)                               # (n,)
        mean = collectives.allreduce(metrics_comm, theta, "ring", "mean", check=False)
        squared = numpy.array([float(((theta - mean) ** 2).sum())])
        return float(numpy.sqrt(collectives.allreduce(metrics_comm, squared, "tree", "mean",
                                                      check=False)[0]))

    @staticmethod
    def bytes_per_step(n_params, itemsize, world_size, args):
        """Bytes each rank sends per training step, by formula (None: not modelled)."""
        return 0

    @classmethod
    def bytes_for_steps(cls, steps, n_params, itemsize, world_size, args):
        """Bytes each rank sends in ``steps`` steps, by formula (what the counters must show)."""
        per_step = cls.bytes_per_step(n_params, itemsize, world_size, args)
        return None if per_step is None else steps * per_step


class Single(Strategy):
    """The reference every strategy is tested against: one rank, the whole global batch."""

    name = "single"
    max_world_size = 1

    def local_rows(self, global_batch_size):
        return slice(0, global_batch_size)


# -- helpers shared by the strategies --------------------------------------------------------
class RankLoader:
    """This rank's ``rows`` of every global batch of (X, y): one epoch of Tensors per ``iter()``.

        epoch e:  order = permutation(n) from (seed, e)          the same on every rank
        step s:   batch = order[s B : (s + 1) B]                  (a last partial batch is dropped)
                  yield X[batch[rows]], y[batch[rows]]            rows = strategy.local_rows(B)

    The order is ``DataLoader``'s (engine/data/loader.py) over the row numbers, so a K-rank
    run and the single-process run at batch B visit exactly the same samples in the same order.
    """

    def __init__(self, X, y, batch_size, rows, seed=0):
        n = len(X)
        self.X, self.y, self.rows = X, y, rows
        self.order = data.DataLoader(numpy.arange(n), numpy.arange(n), batch_size, shuffle=True,
                                     seed=seed, drop_last=True)

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        for batch, _ in self.order:                    # (B,) global row numbers
            mine = batch.numpy()[self.rows]            # (B/K,) this rank's
            yield Tensor(self.X[mine]), Tensor(self.y[mine])


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


def broadcast_parameters(model, comm):
    """Every rank takes rank 0's parameters, in place (MATH A1: the same theta_0 everywhere).

    One checked broadcast per parameter: if the ranks built different models the check
    raises on every rank here, before any training step. Returns the bytes this rank sent."""
    before = comm.counters.bytes_sent
    for p in model.parameters():
        collectives.broadcast(comm, p.data, root=0, out=p.data)
    return comm.counters.bytes_sent - before


def flat_parameters(model):
    """All parameters in one new flat array, in ``parameters()`` order.      (n,)"""
    return numpy.concatenate([p.data.reshape(-1) for p in model.parameters()])


def load_flat_parameters(model, flat):
    """Write a flat array back into the parameters, in place (the inverse of the above)."""
    offset = 0
    for p in model.parameters():
        p.data[...] = flat[offset:offset + p.data.size].reshape(p.shape)
        offset += p.data.size


def averaged_copy(model, comm):
    """A copy of ``model`` holding theta_bar = (1/K) sum_i theta_i (MATH F11), over ``comm``."""
    average = copy.deepcopy(model)
    mean = collectives.allreduce(comm, flat_parameters(model), "ring", "mean", check=False)
    load_flat_parameters(average, mean)
    return average


def cast_model(model, dtype):
    """Cast every parameter to ``dtype`` in place (float64 for the exact-equivalence tests)."""
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    return model
