"""Synchronous data parallelism (MATH A1, F9, F10): every rank holds the whole model.

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy dp --algorithm ring

One step on K ranks, global batch B, each rank k holding its |B_k| = B/K rows:

    rank k:  g_k = (1/|B_k|) sum_{x in B_k} grad J(x; theta)          F9   local backward
    all:     g   = (1/K) sum_k g_k           (an all-reduce, op=mean)  F10
    all:     theta <- theta - alpha g        (every rank the same update, so the replicas
                                              stay identical without ever sending theta)

With equal shares, (1/K) sum_k g_k = (1/B) sum_{x in B} grad J(x; theta): the gradient a
single process computes on the whole global batch. So K-rank data parallelism IS
single-process training at batch B, up to the order of floating-point sums
(tests/test_strategies*.py: 1e-10 in float64 after 50 steps, for every all-reduce).

Two versions, side by side (as picotron keeps its naive class beside the bucketed one):

    NaiveDataParallel   one all-reduce per gradient tensor: k tensors pay k latencies
    DataParallel        gradients packed into buckets of ``bucket_bytes`` (MATH A6), one
                        all-reduce per bucket; buckets filled in reverse parameter order,
                        the order backward produces them (the last layer's first)

Cost per step (ring, n gradient bytes, k tensors, c = ceil(n / bucket_bytes) buckets):

    naive     k * 2 (K-1) alpha + 2 (K-1)/K n beta
    bucketed  c * 2 (K-1) alpha + 2 (K-1)/K n beta        bytes sent per rank: 2 (K-1)/K n

``overlap=True`` (``--overlap``) starts each bucket's all-reduce from a gradient hook while
backward still computes the earlier layers (strategies/overlap.py; PyTorch DDP's design),
with the same numbers bit for bit; what it saves is measured in benchmarks/strategies.py.
"""
import collectives
from strategies.base import Strategy, timed
from strategies.overlap import OverlappedAllreduce
from strategies.parameters import broadcast_parameters, gradients
from strategies.traffic import bucketed_allreduce_bytes

DEFAULT_BUCKET_BYTES = 1 << 20   # 1 MiB: the MLP's 407 KB of float32 gradients in one bucket


class NaiveDataParallel(Strategy):
    """Data parallel with one all-reduce per gradient tensor (the version to read first)."""

    name = "dp-naive"

    def __init__(self, model, comm, algorithm="ring"):
        super().__init__(model, comm)
        self.algorithm = algorithm
        self.setup_bytes = broadcast_parameters(model, comm)   # A1: rank 0's theta_0 everywhere

    @timed
    def after_backward(self):
        for g in gradients(self.model.parameters()):
            collectives.allreduce(self.comm, g, self.algorithm, "mean", out=g, check=False)  # F10


class DataParallel(Strategy):
    """Data parallel with bucketed gradient all-reduce (MATH F10, A6).

    ``algorithm``: a name of ``collectives.ALGORITHMS`` ("ring", "tree", "recursive-doubling",
    "naive", "mpi", "auto"). ``bucket_bytes``: the most bytes one all-reduce carries.
    ``overlap``: start each bucket's all-reduce as soon as backward has completed it.
    """

    name = "dp"
    resizable = True     # every rank holds the same theta and optimiser state (A1)

    def __init__(self, model, comm, algorithm="ring", bucket_bytes=DEFAULT_BUCKET_BYTES, overlap=False):
        super().__init__(model, comm)
        collectives.get_algorithm(algorithm)   # an unknown name fails here, not at the first step
        self.algorithm, self.bucket_bytes = algorithm, bucket_bytes
        self.setup_bytes = broadcast_parameters(model, comm)   # A1: rank 0's theta_0 everywhere
        # Reverse order: backward finishes the last layer's gradients first (see module doc).
        self.params = self.model.parameters()[::-1]
        self.overlap = OverlappedAllreduce(comm, self.params, bucket_bytes, algorithm) if overlap else None

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("dp")
        group.add_argument("--overlap", action="store_true",
                           help="all-reduce each bucket during backward (strategies/overlap.py)")
        from strategies import compressed_dp     # it subclasses this one: imported when used
        compressed_dp.add_arguments(parser)

    @classmethod
    def check(cls, world_size, args):
        from strategies import compressed_dp
        return compressed_dp.check(args) or super().check(world_size, args)

    @classmethod
    def from_args(cls, model, comm, args):
        options = dict(algorithm=args.algorithm, bucket_bytes=args.bucket_bytes, overlap=args.overlap)
        if getattr(args, "compress", "none") != "none":          # --compress: the compressed exchange
            from strategies import compressed_dp
            params = model.parameters()[::-1]
            compressor = compressed_dp.compressor_from_args(args, compressed_dp.CompressedDataParallel.matrix_shapes(params))
            return compressed_dp.CompressedDataParallel(model, comm, compressor, **options)
        return cls(model, comm, **options)

    def after_backward(self):
        if self.overlap is None:
            self.allreduce_gradients()
        else:
            self.wait_for_gradients()

    @timed
    def wait_for_gradients(self):
        """The overlapped all-reduces' remainder: what is still in flight when backward ends."""
        self.overlap.wait()

    @timed
    def allreduce_gradients(self):
        """g <- (1/K) sum_k g_k for every gradient, one all-reduce per bucket (F10).

        Each ``p.grad`` becomes a view into its bucket's reduced flat buffer (no copy back);
        ``check=False``: the shapes were checked once, by the broadcast in __init__."""
        averaged = collectives.bucketed_allreduce(self.comm, gradients(self.params), self.bucket_bytes,
                                                  self.algorithm, "mean", check=False)
        for p, g in zip(self.params, averaged):
            p.grad = g

    def bytes_per_step(self):
        per_step = bucketed_allreduce_bytes(self.algorithm, self.comm.size, [p.data for p in self.params],
                                            self.bucket_bytes, self.comm.link)
        return None if per_step is None else {self.role: per_step}
