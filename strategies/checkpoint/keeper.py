"""Save and resume a whole run: what the runner's --checkpoint-dir, --checkpoint-every N,
--keep-checkpoints K and --resume do (MATH A9: a failure loses at most N steps of work).

What one rank writes (state_file.py), each part its own:

    parameters   the arrays of strategy.parameters(): what this rank's optimiser updates
    optimizer    optimizer.state_dict(): momentum buffers, Adam's moments and step counts
    strategy     strategy.state_dict() (stateful.py): the local-SGD counter, a parameter
                 server's versions and schedule, a worker's replica, compression residuals ...
    rng          the engine's generator (engine/random.py), so the next draw is the same
    position     epoch, steps done in it, steps in all, this rank's loss sums of the epoch so
                 far, the record's epochs so far: the data loader restarts at (epoch, step)
                 because batch order is a function of (seed, epoch) alone (engine/data/loader.py)

Resuming rebuilds everything from the same command line (theta_0, strategy, optimiser), then
loads these on top. The next step then computes exactly what the uninterrupted run's next
step computed, so the final parameters are bit-identical (tests/test_checkpoint*.py).

When: every N optimiser steps, between two steps, for a strategy with nothing in flight
there (``strategy.checkpoint_between_steps``); an asynchronous parameter server has pushes
in flight between steps, so it saves at the end of the first epoch that crossed a multiple of
N, once ``drain`` has emptied the wires. Where on disk, and how a torn checkpoint is found:
store.py.
"""
import os
import time
from dataclasses import asdict, dataclass, field

from engine import backend
from engine.random import default_generator
from strategies.checkpoint import store
from strategies.checkpoint.state_file import decode, encode
from strategies.messages import agree, broadcast_json, gather_json

# Flags a resumed run may change: how long to train, where to write, how to watch.
RUN_FLAGS = {"epochs", "max_steps", "out", "save_params", "quiet", "threads", "checkpoint_dir",
             "checkpoint_every", "keep_checkpoints", "resume", "timeout", "on_nan"}


class CheckpointError(Exception):
    """The run cannot resume (raised on every rank alike, with one message)."""


@dataclass
class Position:
    """Where training stood: ``epoch`` (from 1) is in progress with ``done`` of its steps taken."""

    epoch: int
    done: int
    steps: int                  # steps taken since the start, all epochs
    loss_sum: float             # this rank's sums over the epoch's ``done`` steps (MATH F8)
    rows: int
    epochs: list                # the record's per-epoch entries so far
    train_seconds: float
    strategy: dict = field(default=None, repr=False)   # mid-epoch: loaded after begin_epoch


class Checkpoints:
    """The checkpoints of one run on this rank (collective over ``metrics_comm``)."""

    def __init__(self, args, comm, metrics_comm, strategy, optimizer):
        self.directory = os.path.expanduser(args.checkpoint_dir)
        self.every, self.keep = args.checkpoint_every, args.keep_checkpoints
        self.args, self.comm, self.metrics = args, comm, metrics_comm
        self.strategy, self.optimizer = strategy, optimizer
        self.last, self.seconds, self.written = 0, 0.0, 0

    def due_between_steps(self, steps):
        return self.strategy.checkpoint_between_steps and steps % self.every == 0

    def due_at_epoch_end(self, steps):
        return steps // self.every > self.last // self.every

    def config(self):
        return {k: v for k, v in sorted(vars(self.args).items()) if k not in RUN_FLAGS}

    # -- saving ---------------------------------------------------------------------------------
    def save(self, position):
        """Every rank writes its file; rank 0 then writes the manifest and prunes."""
        tic = time.perf_counter()
        state = {"parameters": [backend.to_numpy(p.data) for p in self.strategy.parameters()],
                 "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                 "strategy": self.strategy.state_dict(),
                 "rng": default_generator().bit_generator.state,
                 "position": asdict(position)}       # its strategy: None (that is above)
        entry = store.write_rank_file(self.directory, position.steps, self.comm.rank, encode(state))
        entries = gather_json(self.metrics, entry | {"loss_sum": position.loss_sum, "rows": position.rows})
        if self.comm.rank == 0:          # every file is on disk: the gather was their last word
            store.write_manifest(self.directory, position.steps, dict(
                format=store.FORMAT, step=position.steps, epoch=position.epoch, done=position.done,
                world_size=self.comm.size, strategy=self.args.strategy,
                resizable=self.strategy.resizable, config=self.config(),
                loss_sum=sum(e.pop("loss_sum") for e in entries), rows=sum(e.pop("rows") for e in entries),
                files=entries))
            store.prune(self.directory, self.keep)
        self.last, self.written = position.steps, self.written + 1
        self.seconds += time.perf_counter() - tic

    # -- resuming -------------------------------------------------------------------------------
    def resume(self, say=print):
        """Load the newest whole checkpoint; returns its Position, or None (none yet: start at
        step 0). Raises CheckpointError on every rank when it cannot be used."""
        choice = broadcast_json(self.metrics, self._choose() if self.comm.rank == 0 else None)
        for skipped in choice.get("skipped", []):
            say(f"checkpoint skipped: {skipped}")
        if "error" in choice:
            raise CheckpointError(choice["error"])
        if choice["step"] is None:
            say(f"no checkpoint in {self.directory}: starting at step 0")
            return None
        manifest, problem, position = choice["manifest"], None, None
        try:
            position = self._load(manifest)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"rank {self.comm.rank}: {exc}"
        first = agree(self.metrics, problem)
        if first is not None:
            problems = gather_json(self.metrics, problem)
            raise CheckpointError(problems[first] if problems else f"rank {first} could not load the checkpoint")
        say(f"resumed from {store.folder(self.directory, manifest['step'])} "
            f"(epoch {manifest['epoch']}, step {manifest['step']}, written by {manifest['world_size']} ranks)")
        self.last = position.steps
        return position

    def _choose(self):
        """Rank 0: the newest whole checkpoint and what was skipped, or why none can be used."""
        skipped = []
        try:
            for step in store.steps_on_disk(self.directory):
                manifest, why = store.read_manifest(self.directory, step)
                if why:
                    skipped.append(f"{store.folder(self.directory, step)}: {why}")
                    continue
                problem = self._incompatible(manifest)
                return {"error": problem, "skipped": skipped} if problem else \
                    {"step": step, "manifest": manifest, "skipped": skipped}
        except OSError as exc:
            return {"error": f"--checkpoint-dir {self.directory}: {exc}", "skipped": skipped}
        if skipped:
            return {"error": f"no whole checkpoint in {self.directory} (every one was skipped)", "skipped": skipped}
        return {"step": None}

    def _incompatible(self, manifest):
        if manifest["strategy"] != self.args.strategy:
            return f"the checkpoint is of --strategy {manifest['strategy']}, this run is {self.args.strategy}"
        differ = {k: (manifest["config"].get(k), v) for k, v in self.config().items()
                  if manifest["config"].get(k) != v}
        if differ:
            listed = ", ".join(f"--{k.replace('_', '-')} {old!r} (now {new!r})" for k, (old, new) in differ.items())
            return f"the checkpoint was written with other flags: {listed}"
        if manifest["world_size"] != self.comm.size and not manifest["resizable"]:
            return (f"the checkpoint was written by {manifest['world_size']} ranks and --strategy "
                    f"{self.args.strategy} keeps a different state on each rank: resume on "
                    f"{manifest['world_size']} ranks (dp without --compress may change its world size)")
        return None

    def _load(self, manifest):
        """Put this rank's part of ``manifest``'s checkpoint into the run; returns its Position."""
        same_size = manifest["world_size"] == self.comm.size
        entry = manifest["files"][self.comm.rank % manifest["world_size"]]   # resized: replicas alike
        state = decode(store.read_rank_file(self.directory, manifest["step"], entry), entry["file"])
        params = self.strategy.parameters()
        if len(state["parameters"]) != len(params):
            raise ValueError(f"{entry['file']} holds {len(state['parameters'])} parameters, "
                             f"this rank optimises {len(params)}")
        for i, (p, saved) in enumerate(zip(params, state["parameters"])):
            if p.data.shape != saved.shape or p.data.dtype != saved.dtype:
                raise ValueError(f"{entry['file']}: parameter {i} is {saved.dtype} {saved.shape}, "
                                 f"the model's {p.data.dtype} {p.data.shape}")
            p.data[...] = backend.to_device(saved, p.device)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        default_generator().bit_generator.state = state["rng"]
        position = Position(**state["position"])
        if not same_size:                   # the epoch's loss sums so far: all on rank 0
            position.loss_sum, position.rows = (manifest["loss_sum"], manifest["rows"]) if self.comm.rank == 0 else (0.0, 0)
        if position.done:
            position.strategy = state["strategy"]     # begin_epoch would reset it: loaded after
        else:
            self.strategy.load_state_dict(state["strategy"])
        return position
