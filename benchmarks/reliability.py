"""What the reliability features cost: checkpoints, resuming, the NaN guard and the watchdog.

    mpirun -n 4 python -m mpi4py -m benchmarks.reliability            # a few minutes
    mpirun -n 4 python -m mpi4py -m benchmarks.reliability --quick    # the test's, seconds

Writes <out>/reliability.json and reliability.png (default out: benchmarks/results). Every run
is the runner's ``--strategy dp`` on all ranks (``strategies.train.run`` in this process), global
batch 128, SGD with momentum 0.9 (so the optimiser has a state to save), --max-steps S, on full
Fashion-MNIST when installed (``--dataset mnist``: the bundled subset). Each figure is a ratio
against a reference measured in the same run, over --rounds rounds (median, min, max, values):

1. Checkpoints (MATH A9), mlp and lenet5, --checkpoint-every N for N in EVERY and without:
   seconds per checkpoint (rank 0's ``checkpoints.seconds / written``), its share of the
   training time (checkpoint s / (train s + checkpoint s)), the wall time against the run
   without, bytes per checkpoint (the manifest's file sizes, every rank's). Reference: every
   rank ``numpy.savez``-es the same arrays (its parameters and optimiser state, read back from
   its own checkpoint file) into the same directory at once, then a barrier; and the same with
   an fsync. Ours also writes the rest of the state as JSON, hashes, fsyncs and renames each
   file, gathers the entries and writes the manifest.
2. Resuming: --resume from the newest checkpoint of the N = EVERY[1] run, to the same S. The
   final parameters must be bit-identical (params_sha256) to the run without checkpoints;
   startup = seconds of the call before the first step (call - the record's wall_seconds),
   resumed against fresh (the run without checkpoints).
3. The NaN guard (MATH A8, --on-nan stop): ``NanGuard.problem`` over the gradients of one step
   at the per-rank batch (B / ranks), against that step without the guard, in turns, one process.
4. The watchdog: --timeout 300 (the runner's default) against 0 (off), samples/s of the mlp,
   the two alternating in each round (``collectives.set_timeout``, as the runner's main does).
"""
import argparse
import os
import pathlib
import shutil
import tempfile
import time

import numpy

import collectives
import engine.functional as F
from engine import Tensor, manual_seed, models, optim
from engine.process import configure_process
from strategies import loop, train
from strategies.base import Single
from strategies.checkpoint import store
from strategies.checkpoint.state_file import decode
from strategies.messages import broadcast_json
from strategies.nan_guard import NanGuard
from strategies.parameters import cast_model

from benchmarks import measure
from benchmarks.mpi_runs import cpu_busy, on_first

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ("mlp", "lenet5")
COMMON = "--strategy dp --batch-size 128 --lr 0.05 --momentum 0.9 --seed 0 --epochs 1000 --quiet"
FULL = dict(steps=300, every=(10, 50), watchdog_steps=400, repeats=20)
QUICK = dict(steps=12, every=(4, 8), watchdog_steps=12, repeats=3)


def spread(values):
    v = [float(x) for x in values]
    return dict(median=float(numpy.median(v)), min=min(v), max=max(v), values=v)


def run_dp(comm, flags, data, timeout=300.0):
    """One dp run on every rank; rank 0's record (None elsewhere) with ``call_seconds`` added."""
    args = train.parse_args(flags.split())
    collectives.set_timeout(timeout or None)

    def timed(sub):
        tic = time.perf_counter()
        record = train.run(args, sub, data)
        return dict(record, call_seconds=time.perf_counter() - tic)
    return on_first(comm, comm.size, timed)


def arrays_of(tree):
    if isinstance(tree, numpy.ndarray):
        yield tree
    for value in (tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else ()):
        yield from arrays_of(value)


def newest_manifest(directory):
    return store.read_manifest(directory, store.steps_on_disk(directory)[0])[0]


def savez_seconds(comm, directory, repeats, fsync):
    """Rank 0's seconds of every rank numpy.savez-ing its checkpoint's parameter and optimiser
    arrays into ``directory`` at once, then a barrier (with ``fsync``: flushed to the disk first)."""
    manifest = newest_manifest(directory)
    entry = manifest["files"][comm.rank]
    state = decode(store.read_rank_file(directory, manifest["step"], entry))
    arrays = list(arrays_of([state["parameters"], state["optimizer"]]))
    path, times = os.path.join(directory, f"savez-{comm.rank:05d}.npz"), []
    for _ in range(repeats):
        comm.barrier()
        tic = time.perf_counter()
        with open(path, "wb") as f:
            numpy.savez(f, *arrays)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        comm.barrier()
        times.append(time.perf_counter() - tic)
    return times


def checkpoints(comm, data, model, cfg, rounds, scratch, say):
    """Runs with --checkpoint-every N (and none, and a resume), the savez reference; rank 0's summary."""
    runs, savez, fsynced = {str(n): [] for n in cfg["every"] + ("none",)}, [], []
    resumed = []
    base = f"{cfg['common']} --model {model} --max-steps {cfg['steps']}"
    for i in range(rounds):
        for n in cfg["every"] + ("none",):
            directory = os.path.join(scratch, f"{model}-{n}-{i}")
            flags = base if n == "none" else (f"{base} --checkpoint-dir {directory} --checkpoint-every {n} "
                                              "--keep-checkpoints 2")
            r = run_dp(comm, flags, data)
            if n != "none":
                savez += savez_seconds(comm, directory, cfg["repeats"], fsync=False)
                fsynced += savez_seconds(comm, directory, cfg["repeats"], fsync=True)
            if comm.rank == 0:
                c = r["checkpoints"] or dict(written=0, seconds=0.0)
                runs[str(n)].append(dict(
                    r, written=c["written"], checkpoint_seconds=c["seconds"],
                    seconds_per_checkpoint=c["seconds"] / c["written"] if c["written"] else None,
                    share_of_training=c["seconds"] / (r["train_seconds"] + c["seconds"]),
                    bytes_per_checkpoint=sum(e["bytes"] for e in newest_manifest(directory)["files"])
                    if c["written"] else 0))
            if n == cfg["every"][1]:
                resumed.append(run_dp(comm, f"{flags} --resume", data))
        if comm.rank == 0:
            say(f"  {model} round {i + 1}: " + ", ".join(
                f"every {n}: {v[-1]['written']} saves, {v[-1]['checkpoint_seconds']:.3f} s, "
                f"{v[-1]['share_of_training']:.1%} of training" for n, v in runs.items() if n != "none"), flush=True)
    if comm.rank != 0:
        return None
    fresh, n_resume = runs["none"], str(cfg["every"][1])
    per_save = [r["seconds_per_checkpoint"] for n, v in runs.items() if n != "none" for r in v]
    summary = {n: dict(written=v[0]["written"], bytes_per_checkpoint=v[0]["bytes_per_checkpoint"],
                       seconds_per_checkpoint=spread([r["seconds_per_checkpoint"] or 0 for r in v]),
                       share_of_training=spread([r["share_of_training"] for r in v]),
                       wall_ratio_vs_none=spread([r["wall_seconds"] / f["wall_seconds"] for r, f in zip(v, fresh)]),
                       samples_per_second=spread([r["samples_per_second"] for r in v]),
                       same_params_as_none=all(r["params_sha256"] == f["params_sha256"] for r, f in zip(v, fresh)))
               for n, v in runs.items()}
    startup = lambda r: r["call_seconds"] - r["wall_seconds"]            # noqa: E731 - before step 1
    resume = dict(from_run=f"every {n_resume}",
                  resumed_from_step=[r["checkpoints"]["resumed_from_step"] for r in resumed],
                  bit_identical=all(r["params_sha256"] == f["params_sha256"] for r, f in zip(resumed, fresh)),
                  startup_seconds_resumed=spread([startup(r) for r in resumed]),
                  startup_seconds_fresh=spread([startup(f) for f in fresh]),
                  startup_ratio=spread([startup(r) / startup(f) for r, f in zip(resumed, fresh)]),
                  wall_seconds_resumed=spread([r["wall_seconds"] for r in resumed]))
    ours, ref, ref_sync = spread(per_save), spread(savez), spread(fsynced)
    return dict(flags=base, n_params=fresh[0]["n_params"], runs=summary, resume=resume,
                seconds_per_checkpoint=ours, savez_seconds=ref, savez_fsync_seconds=ref_sync,
                ratio_vs_savez=ours["median"] / ref["median"], ratio_vs_savez_fsync=ours["median"] / ref_sync["median"])


def guard_cost(sub, model_name, data, batch, repeats):
    """NanGuard.problem over one step's gradients against the step itself (no guard), in turns."""
    manual_seed(0)
    model = cast_model(models.build(model_name), "float32")
    strategy = Single(model, None)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb, yb = Tensor(loop.model_inputs(model, data[0][:batch])), Tensor(data[1][:batch])
    guard = NanGuard("stop", sub, strategy.guarded_parameters())
    steps = {"step": lambda: strategy.train_step(optimizer, F.cross_entropy, xb, yb),
             "guard": lambda: guard.problem(0.5)}
    steps["step"]()
    times = measure.time_in_turns(steps, repeats, warmup=3, block=10)
    results = {name: measure.summarize(t) for name, t in times.items()}
    return dict(batch=batch, results=results, ratio=measure.ratios(results, [("guard", "step")])["guard/step"],
                ratio_spread=spread(numpy.asarray(times["guard"]) / numpy.median(times["step"])))


def watchdog(comm, data, cfg, rounds, say):
    """Samples/s of the mlp with --timeout 0 and 300, alternating; rank 0's summary."""
    flags = f"{cfg['common']} --model mlp --max-steps {cfg['watchdog_steps']}"
    rates = {0: [], 300: []}
    for _ in range(rounds):
        for timeout in rates:
            r = run_dp(comm, flags, data, timeout)
            if comm.rank == 0:
                rates[timeout].append(r["samples_per_second"])
    if comm.rank != 0:
        return None
    ratio = spread([on / off for on, off in zip(rates[300], rates[0])])
    say(f"  watchdog on / off: {ratio['median']:.3f} (samples/s {numpy.median(rates[300]):,.0f} / "
        f"{numpy.median(rates[0]):,.0f})", flush=True)
    return dict(flags=flags, samples_per_second_off=spread(rates[0]), samples_per_second_on=spread(rates[300]),
                ratio_on_over_off=ratio)


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (save_ax, share_ax, ratio_ax) = plt.subplots(1, 3, figsize=(16, 4.8))
    whisk = lambda s, k=1: ([[(s["median"] - s["min"]) * k], [(s["max"] - s["median"]) * k]])  # noqa: E731
    ck = result["checkpoints"]
    for j, (key, label) in enumerate((("seconds_per_checkpoint", "ours"), ("savez_seconds", "numpy.savez"),
                                      ("savez_fsync_seconds", "numpy.savez + fsync"))):
        for i, model in enumerate(ck):
            s = ck[model][key]
            save_ax.bar(i + (j - 1) * 0.27, s["median"] * 1e3, 0.27, yerr=whisk(s, 1e3), capsize=4,
                        color=f"C{j}", label=label if i == 0 else None)
    save_ax.set_xticks(range(len(ck)), [f"{m}\n{ck[m]['runs'][str(result['every'][0])]['bytes_per_checkpoint']:,} B, "
                                        f"ours/savez {ck[m]['ratio_vs_savez']:.2f}x" for m in ck], fontsize=8)
    save_ax.set(ylabel="ms per checkpoint (median, min-max)", title="one checkpoint, every rank")
    save_ax.legend(fontsize=8)
    every = [str(n) for n in result["every"]]
    for i, model in enumerate(ck):
        shares = [ck[model]["runs"][n]["share_of_training"] for n in every]
        share_ax.bar(numpy.arange(len(every)) + (i - 0.5) * 0.4, [s["median"] * 100 for s in shares], 0.4,
                     yerr=numpy.hstack([whisk(s, 100) for s in shares]), capsize=4, label=model)
    share_ax.set(xticks=range(len(every)), xticklabels=[f"every {n} steps" for n in every],
                 ylabel="% of training time (median, min-max)", title="checkpoint time / (training + checkpoint)")
    share_ax.legend(fontsize=8)
    bars = {f"NaN guard / step\n{m}": result["nan_guard"][m]["ratio_spread"] for m in result["nan_guard"]}
    bars["watchdog on / off\nsamples/s, mlp"] = result["watchdog"]["ratio_on_over_off"]
    bars.update({f"resume / fresh\nstartup, {m}": ck[m]["resume"]["startup_ratio"] for m in ck})
    for i, (label, s) in enumerate(bars.items()):
        ratio_ax.bar(i, s["median"], yerr=whisk(s), capsize=4, color=f"C{i}")
        ratio_ax.text(i, s["median"], f"{s['median']:.3g}", ha="center", va="bottom", fontsize=8)
    ratio_ax.axhline(1, color="grey", lw=0.8)
    ratio_ax.set_xticks(range(len(bars)), list(bars), fontsize=7)
    ratio_ax.set(yscale="log", ylabel="ratio (median, min-max; log)", title="overheads against the same run without")
    measure.save_figure(fig, path, result["machine"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled subset, 12 steps, one round")
    parser.add_argument("--dataset", choices=["auto", "mnist", "fashion-mnist"], default="auto",
                        help="auto: full Fashion-MNIST when installed (not with --quick), else the bundled subset")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--checkpoint-root", default=tempfile.gettempdir(), help="the disk checkpoints go to")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    configure_process()
    comm = collectives.world()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    cfg, rounds = QUICK if args.quick else FULL, args.rounds or (1 if args.quick else 3)
    dataset = args.dataset if args.dataset != "auto" else (
        "fashion-mnist" if measure.full_scale(args.quick) else "mnist")
    cfg = dict(cfg, common=f"{COMMON} --dataset {dataset}")
    data = loop.load_data(train.parse_args(cfg["common"].split()))
    scratch = broadcast_json(comm, tempfile.mkdtemp(prefix="mpigrad-reliability-", dir=args.checkpoint_root)
                             if comm.rank == 0 else None)
    busy_before = on_first(comm, 1, lambda sub: cpu_busy())
    say(f"{comm.size} ranks, {dataset}, {cfg['steps']} steps a run, {rounds} round(s); checkpoints in {scratch}")
    result = dict(checkpoints={}, nan_guard={}, every=list(cfg["every"]))
    try:
        for model in MODELS:
            result["checkpoints"][model] = checkpoints(comm, data, model, cfg, rounds, scratch, say)
        result["watchdog"] = watchdog(comm, data, cfg, 2 * rounds, say)
        for model in MODELS:
            result["nan_guard"][model] = on_first(comm, 1, lambda sub: guard_cost(
                sub, model, data, 128 // comm.size, cfg["repeats"] * 10))
    finally:
        on_first(comm, 1, lambda sub: shutil.rmtree(scratch, ignore_errors=True))
    busy_after = on_first(comm, 1, lambda sub: cpu_busy())
    if comm.rank != 0:
        return
    info = measure.machine_info("mpirun -n 4 python -m mpi4py -m benchmarks.reliability")
    result.update(machine=f"{info['cpu']}, {info['usable_cores']} cores, {comm.size} ranks, {dataset}",
                  machine_info=info, load_average_after=list(os.getloadavg()), cpu_busy_before=busy_before,
                  cpu_busy_after=busy_after, dataset=dataset, quick=args.quick, rounds=rounds, config=cfg,
                  checkpoint_root=args.checkpoint_root, scratch=scratch,
                  bit_identical=all(c["resume"]["bit_identical"] for c in result["checkpoints"].values()))
    for model, c in result["checkpoints"].items():
        say(f"  {model}: {c['seconds_per_checkpoint']['median'] * 1e3:.2f} ms per checkpoint, "
            f"{c['ratio_vs_savez']:.2f}x numpy.savez ({c['ratio_vs_savez_fsync']:.2f}x with fsync); "
            f"resume bit-identical {c['resume']['bit_identical']}, startup "
            f"{c['resume']['startup_ratio']['median']:.2f}x fresh; "
            f"NaN guard {result['nan_guard'][model]['ratio']:.4f} of a step")
    measure.save_json(result, args.out / "reliability.json")
    plot(result, args.out / "reliability.png")
    say(f"wrote {args.out / 'reliability.json'} and reliability.png")


if __name__ == "__main__":
    main()
