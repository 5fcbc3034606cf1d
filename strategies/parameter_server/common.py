"""What every parameter-server variant shares (MATH A2): roles, blocks, the worker's step, the
flags, evaluation, bytes per role.

    ranks 0 .. S-1   role "server": owns block j of theta (shards.py) as ONE flat Tensor, which
                     is the runner's optimiser's only parameter (SGD, momentum, Adam state
                     live on the server); no data (local_rows is empty)
    ranks S .. K-1   role "worker": W = K - S of them; rows (k-S) B/W .. (k-S+1) B/W of each
                     global batch of B; no optimiser (parameters() is [])

One worker step (every variant; protocol.py draws the messages):

    g_k = (1/|B_k|) sum_{x in B_k} grad J(x; theta_k)      F9, on its replica theta_k
    push g_k[lo_j:hi_j] with version v_j to every server j
    pull theta[lo_j:hi_j] and its new version from every server j; theta_k <- the blocks

What the server does with a push is the variant: sync.py (F10, backup workers), asynchronous.py
(Downpour, staleness-aware lr, SSP). Same seed on every rank, so theta_0 is the same everywhere
(MATH A1) and nothing is sent before the first step.
"""
import time

import numpy

from engine import Tensor
from strategies.base import StepResult, Strategy
from strategies.parameter_server import protocol, report
from strategies.parameter_server.shards import assembled_from_shards, shard_bounds
from strategies.parameter_server.stragglers import Straggler
from strategies.parameter_server.timeline import Timeline
from strategies.parameters import flat_parameters, gradients, load_flat_parameters

class ParameterServer(Strategy):
    """The shared part; a variant defines ``serve(optimizer)`` (one server step) and ``drain``."""

    replicated = False
    min_world_size = 2

    def __init__(self, model, comm, servers=1, slow_rank=None, slow_factor=1.0):
        super().__init__(model, comm)
        if not 1 <= servers < comm.size:
            raise ValueError(f"--servers {servers}: needs 1 <= servers < world size {comm.size}")
        self.servers, self.workers = servers, comm.size - servers
        self.role = "server" if comm.rank < servers else "worker"
        self.theta = flat_parameters(model)                              # (n,) a worker's replica
        self.bounds = shard_bounds(self.theta.size, servers)
        self.timeline = Timeline()
        self.straggler = Straggler(slow_factor if comm.rank == slow_rank else 1.0)
        # What the server logs (report.py sums it over servers): tau -> count, drops, leads.
        self.staleness, self.dropped, self.clock_leads = {}, 0, {}
        if self.role == "server":
            lo, hi = self.bounds[comm.rank]
            self.shard = Tensor(self.theta[lo:hi].copy(), requires_grad=True)   # (n_j,)
            self.version = 0        # updates applied to this block so far
            self.handled = 0        # pushes received so far (every one is answered)
        else:
            self.versions = [0] * servers      # the version of each block this replica holds

    # -- flags ---------------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        """One group for the three variants (the runner calls an inherited add_arguments once)."""
        group = parser.add_argument_group("parameter server (ps-sync, ps-async, ps-ssp)")
        group.add_argument("--servers", type=int, default=1, help="ranks 0..S-1 serve theta in S blocks")
        group.add_argument("--backup-workers", type=int, default=0,
                           help="ps-sync: step with the first W-b gradients, drop the b late ones")
        group.add_argument("--staleness", type=int, default=2,
                           help="ps-ssp: a worker may run at most this many pushes ahead of the slowest")
        group.add_argument("--staleness-lr", action="store_true",
                           help="ps-async/ps-ssp: lr / max(1, tau) for an update of staleness tau")
        group.add_argument("--slow-rank", type=int, default=None, help="this worker (a world rank) is slow")
        group.add_argument("--slow-factor", type=float, default=1.0,
                           help="... by this factor: it sleeps (k-1) x its compute time per step")

    @classmethod
    def data_ranks(cls, world_size, args):
        return world_size - args.servers                                # W: the global batch splits over them

    @classmethod
    def check(cls, world_size, args):
        if not 1 <= args.servers < world_size:
            return (f"--servers {args.servers} needs 1 <= servers < world size {world_size} "
                    "(at least one worker)")
        workers = world_size - args.servers
        if args.backup_workers and cls.name != "ps-sync":
            return f"--backup-workers is for --strategy ps-sync, not {cls.name}"
        if not 0 <= args.backup_workers < workers:
            return f"--backup-workers {args.backup_workers} must be in 0 .. W-1 = {workers - 1}"
        if args.staleness < 0:
            return f"--staleness must be >= 0, got {args.staleness}"
        if args.slow_rank is not None and not args.servers <= args.slow_rank < world_size:
            return (f"--slow-rank {args.slow_rank} must be a worker's world rank "
                    f"({args.servers} .. {world_size - 1})")
        if args.slow_factor < 1:
            return f"--slow-factor must be >= 1, got {args.slow_factor}"
        return super().check(world_size, args)

    @classmethod
    def common_args(cls, args):
        return dict(servers=args.servers, slow_rank=args.slow_rank, slow_factor=args.slow_factor)

    # -- this rank's part ----------------------------------------------------------------------
    def local_rows(self, global_batch_size):
        if self.role == "server":
            return slice(0, 0)
        b, k = global_batch_size // self.workers, self.comm.rank - self.servers
        return slice(k * b, (k + 1) * b)

    def parameters(self):
        return [self.shard] if self.role == "server" else []

    def train_step(self, optimizer, loss_fn, xb, yb):
        self.steps += 1
        if self.role == "server":
            self.serve(optimizer)
            result = StepResult(0.0, 0)
        else:
            result = self.work(loss_fn, xb, yb)
        # What the runner reports as communication time: everything but compute and apply.
        self.comm_seconds = sum(self.timeline.totals[kind] for kind in ("push", "wait", "pull"))
        return result

    def work(self, loss_fn, xb, yb):
        """One worker step: gradient, push every block, pull every block (module docstring)."""
        start = time.time()
        for p in self.model.parameters():
            p.grad = None
        loss = loss_fn(self.model(xb), yb)                               # F9
        loss.backward()
        g = numpy.concatenate([a.reshape(-1) for a in gradients(self.model.parameters())])  # (n,)
        self.straggler.delay(time.time() - start)
        self.timeline.add("compute", start, time.time())
        with self.timeline.span("push"):
            pushes = [protocol.push(self.comm, j, self.versions[j], g[lo:hi])
                      for j, (lo, hi) in enumerate(self.bounds)]
        for j, (lo, hi) in enumerate(self.bounds):                       # in server order: no cycle
            with self.timeline.span("wait"):
                self.versions[j] = protocol.receive_reply_header(self.comm, j)
            with self.timeline.span("pull"):
                protocol.receive_reply_block(self.comm, j, self.theta[lo:hi])
        for requests, _header in pushes:
            self.comm.waitall(requests)
        load_flat_parameters(self.model, self.theta)
        return StepResult(loss.item() * len(yb), len(yb))

    # -- the server's side, shared by the variants ---------------------------------------------
    def receive(self):
        """The next push, from any worker -> (worker, version, gradient block)."""
        with self.timeline.span("wait"):
            worker, version = protocol.receive_header(self.comm)
        with self.timeline.span("push"):
            block = protocol.receive_block(self.comm, worker, numpy.empty_like(self.shard.data))
        self.handled += 1
        return worker, version, block

    def answer(self, worker):
        """Reply to ``worker`` with this block of theta as it is now, and its version."""
        with self.timeline.span("pull"):
            protocol.reply(self.comm, worker, self.version, self.shard.data)

    def log_update(self, tau):
        self.staleness[tau] = self.staleness.get(tau, 0) + 1

    def serve(self, optimizer):
        raise NotImplementedError

    # -- looking at the model ------------------------------------------------------------------
    def eval_model(self, metrics_comm):
        """The whole model with the servers' theta, on every rank (shards.assembled_from_shards)."""
        shard = self.shard.data if self.role == "server" else None
        return assembled_from_shards(self.model, shard, self.bounds, metrics_comm)

    def bytes_per_step(self):
        """Bytes this rank sends per step, headers counted exactly (protocol.py):
        a worker n + 8 S; server j W (n_j + 8). Backup workers and async keep it in total:
        every push is answered once, whenever."""
        itemsize = self.theta.itemsize
        if self.role == "worker":
            return {"worker": self.theta.nbytes + protocol.HEADER_BYTES * self.servers}
        lo, hi = self.bounds[self.comm.rank]
        return {"server": self.workers * ((hi - lo) * itemsize + protocol.HEADER_BYTES)}

    def report(self, metrics_comm):
        return report.gather(self, metrics_comm)

