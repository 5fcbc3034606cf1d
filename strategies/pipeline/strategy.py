"""Model parallelism through the runner: a dp x pp x tp grid of stages (MATH A4, A5, F13).

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy pipeline --model mlp7 \\
        --schedule 1f1b --micro-batches 4                          # pp = 4
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy pipeline --dp 2 --schedule gpipe
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy tp --model mlp7     # tp = 4
    mpirun -n 8 python -m mpi4py -m strategies.train --strategy pipeline --dp 2 --tp 2   # pp = 2

The whole model is built on every rank (the same theta_0 as one process), then cut into
V = v pp contiguous pieces (partition.py: by parameters, by measured time, or --balance); the
rank at pipeline position r keeps virtual stages r, r + pp, ... (v of them: --chunks), and with
tp > 1 shards each stage's Linear pairs over grid.tp (strategies/tensor_parallel). One step:

    the dp group's B/dp rows -> M micro-batches of B/(dp M)       (every rank of the group
                                                                   gets them; stage 0 reads x,
                                                                   the last stage y)
    executor.run(schedule ops)       forwards and backwards of the schedule: p.grad holds
                                     (1/M) sum_m grad L_m = the gradient of the group's rows
    g <- (1/dp) sum over grid.dp     ring all-reduce of the stage's flat gradient (F10)
    theta_stage <- optimiser step    each rank updates only the parameters it holds (F13)

So every schedule, grid and tp degree computes the single process's step at batch B, up to
the order of float sums (tests/test_pipeline.py: float64 1e-10).
"""
import numpy

import collectives
from engine import Tensor, models, nn, no_grad
from strategies.base import StepResult, Strategy
from strategies.grid import Grid, check_degrees
from strategies.messages import broadcast_json
from strategies.parameters import assembled_copy, gradients
from strategies.pipeline import partition, schedules, traffic
from strategies.pipeline.evaluation import pipelined_accuracy
from strategies.pipeline.executor import Executor
from strategies.pipeline.report import pipeline_report
from strategies.tensor_parallel import gather_sequential, shard_sequential


class ModelParallel(Strategy):
    """Pipeline stages (schedules.py) x tensor-parallel shards x data-parallel replicas."""

    name = "pipeline"
    replicated = False
    default_axis = "pp"     # the degree left unset takes the rest of the world

    def __init__(self, model, comm, dp=1, pp=1, tp=1, schedule="1f1b", micro_batches=1, chunks=1,
                 balance="parameters", emulate=None):
        super().__init__(model, comm)
        self.grid = Grid(comm, dp=dp, pp=pp, tp=tp)
        self.schedule, self.micro_batches, self.chunks = schedule, micro_batches, chunks
        # Timings differ from rank to rank: every rank takes rank 0's cut (one small message).
        cut = stage_balance(model, pp * chunks, balance) if balance != "time" or comm.rank == 0 else None
        self.bounds = partition.stage_bounds(broadcast_json(comm, cut) if balance == "time" else cut)
        self.role = f"stage {self.grid.pp_rank}"
        mine = [schedules.virtual_stage(self.grid.pp_rank, c, pp) for c in range(chunks)]
        self.pieces = [model[self.bounds[s][0]:self.bounds[s][1]] for s in mine]   # full layers
        self.modules = [shard_sequential(piece, self.grid.tp) if tp > 1 else piece for piece in self.pieces]
        self.ops = schedules.build(schedule, pp, micro_batches, chunks)[self.grid.pp_rank]
        self.emulate, self.executor, self.rows_per_micro = emulate, None, None

    # -- flags -----------------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("model parallel (pipeline, tp)")
        group.add_argument("--dp", type=int, default=None, help="data-parallel replicas (default 1)")
        group.add_argument("--pp", type=int, default=None, help="pipeline stages (pipeline: the rest)")
        group.add_argument("--tp", type=int, default=None, help="tensor-parallel shards (tp: the rest)")
        group.add_argument("--schedule", choices=schedules.SCHEDULES, default="1f1b")
        group.add_argument("--micro-batches", type=int, default=4, help="M per step (each dp group's rows / M)")
        group.add_argument("--chunks", type=int, default=None,
                           help="model chunks per rank (interleaved: default 2; others 1)")
        group.add_argument("--balance", default="parameters",
                           help="'parameters', 'time' or layers per stage, e.g. 3,2,2,1")
        group.add_argument("--emulate-compute", default=None, metavar="F,B",
                           help="seconds per micro-batch forward, backward (a sleep pads each)")

    @classmethod
    def degrees(cls, world_size, args):
        """(dp, pp, tp): the unset one of pp (pipeline) or tp (tp) takes the rest; others 1."""
        given = {axis: getattr(args, axis, None) for axis in ("dp", "pp", "tp")}
        rest = [axis for axis in given if given[axis] is None and axis != cls.default_axis]
        for axis in rest:
            given[axis] = 1
        if given[cls.default_axis] is None:
            others = given["dp"] * (given["tp"] if cls.default_axis == "pp" else given["pp"])
            given[cls.default_axis] = world_size // others if others and world_size % others == 0 else 0
        return given["dp"], given["pp"], given["tp"]

    @classmethod
    def chunks_of(cls, args):
        return args.chunks or (2 if args.schedule == "interleaved" else 1)

    @classmethod
    def data_ranks(cls, world_size, args):
        return max(1, cls.degrees(world_size, args)[0])

    @classmethod
    def check(cls, world_size, args):
        dp, pp, tp = cls.degrees(world_size, args)
        problem = check_degrees(world_size, dp, pp, tp) if pp and tp else (
            f"--dp {dp} x --{'tp' if pp else 'pp'} ... do not divide the world of {world_size} ranks")
        if problem:
            return problem
        problem = super().check(world_size, args)
        if problem:
            return problem
        rows, M, v = args.batch_size // dp, args.micro_batches, cls.chunks_of(args)
        if M < 1 or rows % M:
            return (f"--micro-batches {M} must divide each data-parallel group's {rows} rows "
                    f"(--batch-size {args.batch_size} / --dp {dp})")
        if args.schedule != "interleaved" and v != 1:
            return f"--chunks {v} is for --schedule interleaved only"
        if args.schedule == "interleaved" and M % pp:
            return f"--schedule interleaved needs --micro-batches ({M}) a multiple of the {pp} stages"
        model = models.build(args.model)                     # the layers, to check the cut
        problem = partition.check_stages(len(model), pp * v)
        if problem:
            return f"--pp {pp} x --chunks {v}: {problem}"
        if args.balance not in ("parameters", "time"):
            try:
                partition.parse_balance(args.balance, len(model), pp * v)
            except ValueError as exc:
                return str(exc)
        narrow = [(i, layer.out_features) for i, layer in enumerate(model)
                  if isinstance(layer, nn.Linear) and layer.out_features < tp]
        if narrow:
            return f"--tp {tp}: layer {narrow[0][0]} has {narrow[0][1]} outputs, fewer than the tp shards"
        if args.emulate_compute is not None and parse_emulate(args.emulate_compute) is None:
            return f"--emulate-compute {args.emulate_compute!r}: give two seconds, forward,backward (e.g. 0.01,0.02)"
        return None

    @classmethod
    def from_args(cls, model, comm, args):
        dp, pp, tp = cls.degrees(comm.size, args)
        return cls(model, comm, dp=dp, pp=pp, tp=tp, schedule=args.schedule,
                   micro_batches=args.micro_batches, chunks=cls.chunks_of(args), balance=args.balance,
                   emulate=parse_emulate(args.emulate_compute) if args.emulate_compute else None)

    # -- this rank's part ---------------------------------------------------------------------------
    def local_rows(self, global_batch_size):
        """The dp group's share; every stage and shard of the group gets the same rows."""
        b, k = global_batch_size // self.grid.degrees["dp"], self.grid.dp_rank
        return slice(k * b, (k + 1) * b)

    def parameters(self):
        return [p for module in self.modules for p in module.parameters()]

    def guarded_parameters(self):
        return [(f"stage {self.grid.pp_rank} chunk {c} {name}", p)
                for c, module in enumerate(self.modules) for name, p in module.named_parameters()]

    def train_step(self, optimizer, loss_fn, xb, yb):
        if self.executor is None:
            self.executor = Executor(self.modules, self.grid.pp, self.grid.degrees["pp"], self.grid.pp_rank,
                                     self.boundary_shapes(xb), xb.data.dtype, self.emulate)
            self.rows_per_micro = len(yb) // self.micro_batches
        for p in self.parameters():
            p.grad = None
        M = self.micro_batches
        b = len(yb) // M
        micro_x = [xb.data[m * b:(m + 1) * b] for m in range(M)]
        micro_y = [yb.data[m * b:(m + 1) * b] for m in range(M)]
        loss_sum, rows = self.executor.run(self.ops, micro_x, micro_y, loss_fn)
        if self.nan_guard is not None:                      # stop: before the dp all-reduce
            self.nan_guard.drop_step(loss_sum, self.steps + 1)
        params = self.parameters()
        if self.grid.degrees["dp"] > 1 and params:
            flat = numpy.concatenate([g.reshape(-1) for g in gradients(params)])
            mean = collectives.allreduce(self.grid.dp, flat, "ring", "mean", check=False)   # F10
            offset = 0
            for p in params:
                p.grad = mean[offset:offset + p.data.size].reshape(p.shape)
                offset += p.data.size
        if optimizer is not None:
            optimizer.step()
        self.steps += 1
        counted = self.grid.tp_rank == 0                    # tp copies of the loss: count one
        return StepResult(loss_sum if counted else 0.0, rows if counted else 0)

    def boundary_shapes(self, xb):
        """{s: feature shape of h_s}, s = -1 the input: one row through the whole model,
        which every rank holds, so the shapes are agreed without a message."""
        shapes, h = {-1: tuple(xb.shape[1:])}, Tensor(xb.data[:1])
        with no_grad():
            for s, (lo, hi) in enumerate(self.bounds):
                h = self.model[lo:hi](h)
                shapes[s] = tuple(h.shape[1:])
        return shapes

    # -- looking at the model ---------------------------------------------------------------------
    def full_modules(self, metrics_comm):
        """This rank's chunks with whole layers: tp shards gathered over an uncounted split of
        ``metrics_comm`` (collective: every rank calls it together)."""
        if self.grid.degrees["tp"] == 1:
            return self.pieces
        if getattr(self, "_metrics_tp", (None,))[0] is not metrics_comm:
            color = self.grid.dp_rank * self.grid.degrees["pp"] + self.grid.pp_rank
            self._metrics_tp = (metrics_comm, metrics_comm.split(color, self.grid.tp_rank, name="tp",
                                                                 counted=False))
        return [gather_sequential(module, self._metrics_tp[1]) for module in self.modules]

    def eval_model(self, metrics_comm):
        """The whole model on every rank: each stage's whole layers, from dp replica 0."""
        owned = {}
        for piece, full in zip(self.pieces, self.full_modules(metrics_comm)):
            if self.grid.dp_rank == 0:
                for (name, _), p in zip(piece.named_parameters(), full.parameters()):
                    owned[name] = p.data
        return assembled_copy(self.model, owned, metrics_comm)

    def evaluate(self, X, y, metrics_comm):
        return pipelined_accuracy(self, X, y, metrics_comm)

    def report(self, metrics_comm):
        """The record's entries: per rank its stage, stash peak and last step's events; per
        pipeline the measured bubble of that step, 1 - busy / makespan (report.py)."""
        return pipeline_report(self, metrics_comm)

    def bytes_per_step(self):
        if self.executor is None:
            return None
        return {self.role: traffic.stage_bytes(self)}


class TensorParallel(ModelParallel):
    """--strategy tp: the same runtime with tp taking the world (pp = dp = 1 unless given)."""

    name = "tp"
    default_axis = "tp"


def stage_balance(model, stages, balance):
    """Layers per virtual stage: --balance parameters | time | a list (partition.py)."""
    if balance == "parameters":
        return partition.balance_by_parameters(model, stages)
    if balance == "time":
        first = model[0]
        width = getattr(first, "in_features", None)
        if width is None:
            raise ValueError("--balance time needs a model whose first layer is a Linear (its input width)")
        sample = Tensor(numpy.zeros((64, width), first.weight.data.dtype))
        return partition.balance_by_time(model, stages, sample)
    return partition.parse_balance(balance, len(model), stages)


def parse_emulate(text):
    """'F,B' -> (F, B) seconds (both > 0), or None when it does not parse."""
    try:
        forward, backward = (float(v) for v in text.split(","))
    except ValueError:
        return None
    return (forward, backward) if forward > 0 and backward > 0 else None
