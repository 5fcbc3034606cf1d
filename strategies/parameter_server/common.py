"""What every parameter-server variant shares (MATH A2): roles, blocks, the worker's step, the
batch schedule, the flags, evaluation, bytes per role.

    ranks 0 .. S-1   role "server": owns block j of theta (shards.py) as ONE flat Tensor, which
                     is the runner's optimiser's only parameter (SGD, momentum, Adam state
                     live on the server); no data (local_rows is empty). Server 0 also hands
                     out the epoch's chunks of rows (schedule.py)
    ranks S .. K-1   role "worker": W = K - S of them; trains on the chunks server 0 hands it
                     (B/W rows of one global batch each); no optimiser (parameters() is [])

One worker step on chunk c (every variant; protocol.py draws the messages):

    g_k = (1/|B_k|) sum_{x in B_k} grad J(x; theta_k)      F9, B_k = the rows of chunk c
    push (v_j, c, g_k[lo_j:hi_j]) to every server j
    pull (V_j, theta[lo_j:hi_j]) from every server j; theta_k <- the blocks; the next chunk
    is server 0's answer (NONE_LEFT: tell servers 1..S-1 it has left the epoch)

The runner calls ``train_step`` once per global batch on every rank. A worker computes at most
one chunk per call, but in the epoch's last call it computes chunks until none is left: a
fast worker takes the chunks a straggler does not get to, and a straggler that hears
NONE_LEFT returns at once from the calls it has left.

What the server does with a push is the variant: sync.py (F10, backup workers), asynchronous.py
(Downpour, staleness-aware lr, SSP). Same seed on every rank, so theta_0 is the same everywhere
(MATH A1) and nothing is sent before the first step.
"""
import time

import numpy

from engine import Tensor
from strategies.base import StepResult, Strategy
from strategies.parameter_server import protocol, report
from strategies.parameter_server.schedule import NONE_LEFT, Schedule, chunk_rows
from strategies.parameter_server.shards import assembled_from_shards, shard_bounds
from strategies.parameter_server.stragglers import Straggler
from strategies.parameter_server.timeline import Timeline
from strategies.parameters import flat_parameters, gradients, load_flat_parameters

class ParameterServer(Strategy):
    """The shared part; a variant defines ``serve(optimizer)`` (one server step),
    ``next_chunk(worker)`` (server 0's pick) and ``late(push)`` (a push after the epoch)."""

    replicated = False
    min_world_size = 2
    # What a checkpoint keeps (a server's or a worker's; the other role's names are absent;
    # epoch_steps is not: begin_epoch sets it from the epoch's length, which --max-steps may change):
    state_attributes = ("steps", "version", "handled", "schedule", "staleness", "dropped", "clock_leads",
                        "theta", "versions", "chunk", "pushes", "leaves", "calls", "left")

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
        self.schedule = Schedule(self.workers, first_worker=servers)     # used by server 0
        self.left = set()       # workers that have left this epoch (NONE_LEFT sent / received)
        self.pushes = self.leaves = 0     # a worker's pushes and leave headers, for the bytes
        self.loader, self.epoch_steps, self.calls = None, 0, 0
        if self.role == "server":
            lo, hi = self.bounds[comm.rank]
            self.shard = Tensor(self.theta[lo:hi].copy(), requires_grad=True)   # (n_j,)
            self.version = 0        # updates applied to this block so far
            self.handled = 0        # pushes received so far (every one is answered)
        else:
            self.versions = [0] * servers      # the version of each block this replica holds
            self.chunk = NONE_LEFT              # the chunk it computes next (begin_epoch: its own)

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
        """None fixed: a worker reads the rows of the chunks server 0 hands it (schedule.py)."""
        return slice(0, 0)

    def begin_epoch(self, loader, steps):
        """A new epoch of ``steps`` global batches: worker i starts on chunk i, server 0 hands
        out the rest, and nobody has left yet."""
        self.loader, self.epoch_steps, self.calls = loader, steps, 0
        self.left = set()
        if self.role == "server":
            self.schedule.begin(steps, self.version)
        else:
            self.chunk = self.comm.rank - self.servers

    def parameters(self):
        return [self.shard] if self.role == "server" else []

    def load_state_dict(self, state):
        """A checkpoint's state; a worker's model becomes its restored replica theta."""
        super().load_state_dict(state)
        if self.role == "worker":
            load_flat_parameters(self.model, self.theta)

    def train_step(self, optimizer, loss_fn, xb, yb):
        self.steps += 1
        if self.role == "server":
            self.serve(optimizer)
            result = StepResult(0.0, 0)
        else:
            result = self.work(loss_fn)
        # What the runner reports as communication time: everything but compute and apply.
        self.comm_seconds = sum(self.timeline.totals[kind] for kind in ("push", "wait", "pull"))
        return result

    def work(self, loss_fn):
        """At most one chunk per call, but chunks until NONE_LEFT in the epoch's last call."""
        if self.loader is None:
            raise RuntimeError(f"{self.name} worker {self.comm.rank}: begin_epoch was not called "
                               "(the runner calls it; a loop of your own must too)")
        self.calls += 1
        last = self.calls >= self.epoch_steps
        loss_sum, rows = 0.0, 0
        while self.chunk != NONE_LEFT:
            chunk_loss, chunk_size = self.compute(loss_fn, self.chunk)
            loss_sum, rows = loss_sum + chunk_loss, rows + chunk_size
            if not last:
                break
        return StepResult(loss_sum, rows)

    def compute(self, loss_fn, chunk):
        """One chunk: gradient, push every block, pull every block (module docstring);
        returns (loss summed over its rows, rows)."""
        step, rows = chunk_rows(chunk, self.workers, self.loader.batch_size)
        xb, yb = self.loader.take(step, rows)
        start = time.time()
        for p in self.model.parameters():
            p.grad = None
        loss = loss_fn(self.model(xb), yb)                               # F9
        loss.backward()
        if self.nan_guard is not None:                                   # stop: before the push
            self.nan_guard.drop_step(loss.item(), self.pushes + 1)
        g = numpy.concatenate([a.reshape(-1) for a in gradients(self.model.parameters())])  # (n,)
        self.straggler.delay(time.time() - start)
        self.timeline.add("compute", start, time.time())
        with self.timeline.span("push"):
            pushes = [protocol.push(self.comm, j, self.versions[j], chunk, g[lo:hi])
                      for j, (lo, hi) in enumerate(self.bounds)]
        self.pushes += 1
        for j, (lo, hi) in enumerate(self.bounds):                       # in server order: no cycle
            with self.timeline.span("wait"):
                self.versions[j], next_chunk = protocol.receive_reply_header(self.comm, j)
            if j == 0:
                self.chunk = next_chunk                                  # server 0 schedules
            with self.timeline.span("pull"):
                protocol.receive_reply_block(self.comm, j, self.theta[lo:hi])
        for requests, _header in pushes:
            self.comm.waitall(requests)
        load_flat_parameters(self.model, self.theta)
        if self.chunk == NONE_LEFT:                                      # the others learn it
            for j in range(1, self.servers):
                protocol.leave(self.comm, j, self.versions[j])
                self.leaves += 1
        return loss.item() * len(yb), len(yb)

    # -- the server's side, shared by the variants ---------------------------------------------
    def receive(self):
        """The next push from any worker -> (worker, version, chunk, gradient block), or None
        once every worker has left the epoch; a leave header is noted on the way."""
        while len(self.left) < self.workers:
            with self.timeline.span("wait"):
                worker, version, chunk = protocol.receive_header(self.comm)
            if chunk == NONE_LEFT:                                       # servers 1..S-1 only
                self.left.add(worker)
                self.release()
                continue
            with self.timeline.span("push"):
                block = protocol.receive_block(self.comm, worker, numpy.empty_like(self.shard.data))
            self.handled += 1
            return worker, version, chunk, block
        return None

    def answer(self, worker):
        """Reply to ``worker`` with this block of theta as it is now, its version and, from
        server 0, the worker's next chunk (NONE_LEFT: it has left the epoch)."""
        chunk = self.next_chunk(worker) if self.comm.rank == 0 else NONE_LEFT
        with self.timeline.span("pull"):
            protocol.reply(self.comm, worker, self.version, chunk, self.shard.data)
        if self.comm.rank == 0 and chunk == NONE_LEFT:
            self.left.add(worker)

    def release(self):
        """Send the replies a variant holds back (SSP); called whenever a worker leaves."""

    def drain(self):
        """A server receives until every worker has left the epoch; what still arrives is
        ``late`` (ps-sync: a dropped push, answered; async: an error). Workers have nothing in
        flight: their last call ran until NONE_LEFT."""
        if self.role != "server":
            return
        while (push := self.receive()) is not None:
            self.late(*push)

    def log_update(self, tau):
        self.staleness[tau] = self.staleness.get(tau, 0) + 1

    def serve(self, optimizer):
        raise NotImplementedError

    def next_chunk(self, worker):
        raise NotImplementedError

    def late(self, worker, version, chunk, block):
        raise NotImplementedError

    # -- looking at the model ------------------------------------------------------------------
    def eval_model(self, metrics_comm):
        """The whole model with the servers' theta, on every rank (shards.assembled_from_shards)."""
        shard = self.shard.data if self.role == "server" else None
        return assembled_from_shards(self.model, shard, self.bounds, metrics_comm)

    def bytes_per_step(self):
        """Bytes this rank sends per step with every worker at one chunk per global batch,
        headers counted exactly (protocol.py): a worker n + 16 S; server j W (n_j + 16)."""
        if self.role == "worker":
            return {"worker": self.theta.nbytes + protocol.HEADER_BYTES * self.servers}
        lo, hi = self.bounds[self.comm.rank]
        return {"server": self.workers * ((hi - lo) * self.theta.itemsize + protocol.HEADER_BYTES)}

    def bytes_for_steps(self, steps):
        """What this rank sent, by the protocol's sizes and its own count of messages (how
        many chunks each worker takes is the schedule's): a worker pushes (n + 16 S) + leaves
        16; server j answers each push it received, handled (n_j + 16)."""
        h = protocol.HEADER_BYTES
        if self.role == "worker":
            return {"worker": self.pushes * (self.theta.nbytes + h * self.servers) + self.leaves * h}
        lo, hi = self.bounds[self.comm.rank]
        return {"server": self.handled * ((hi - lo) * self.theta.itemsize + h)}

    def report(self, metrics_comm):
        return report.gather(self, metrics_comm)

