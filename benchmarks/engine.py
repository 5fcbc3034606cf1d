"""How fast is the engine? Training steps and a full epoch, against NumPy and PyTorch.

    python -m benchmarks.engine                      # the full run (about a minute)
    python -m benchmarks.engine --quick --out /tmp   # a smoke test (seconds)
    python -m benchmarks.engine --only lenet5        # one section: mlp, lenet5, epoch, gpu

(Run it as a module from the repository root: ``benchmarks/engine.py`` run by path would
shadow the ``engine`` package.) Float32 throughout; the engine and PyTorch get the same
initial weights and the same batches, and their losses and gradients are compared before
anything is timed. Sections, one module each:

    mlp     benchmarks/engine_mlp.py     MLP 784-512-256-10 step: engine, NumPy by hand, PyTorch
    lenet5  benchmarks/engine_lenet5.py  LeNet-5 momentum-SGD step, batch 64: engine, PyTorch
    epoch   benchmarks/engine_epoch.py   one Fashion-MNIST epoch of an MLP 784-128-10
    gpu     benchmarks/engine_mlp.py     the MLP step at batch 1024 on the GPU (CuPy)

Timings (benchmarks/measure.py): ``--repeats`` timed steps per implementation, taken in turns
of ``--block`` steps (each turn after ``--warmup`` untimed ones) so that a noisy neighbour
slows all alike; we report the median and the 10th/90th percentiles; PyTorch gets as many
threads as NumPy's BLAS. The process is set up as training sets it up
(``engine.process.configure_process()``: malloc keeps freed memory; ``MPIGRAD_KEEP_FREED_MEMORY=0``
measures without). The load average is recorded: above 1 on a 2-core machine, other work
shares the cores and the ratios are less trustworthy. Results: ``<out>/engine.json`` (the
MLP step at the top level as ``results``/``ratios``; ``lenet5``, ``epoch``, ``gpu`` beside
it) and ``<out>/engine.png``.
"""
import argparse
import os
from pathlib import Path

from benchmarks import engine_epoch, engine_lenet5, engine_mlp, measure
from engine.process import configure_process

SECTIONS = ("mlp", "lenet5", "epoch", "gpu")
LABELS = {"engine": "mpigrad\nengine", "numpy": "NumPy\nby hand", "torch": "PyTorch",
          "engine_cuda": "engine\n(GPU)", "engine_cpu": "engine\n(CPU)", "torch_cuda": "PyTorch\n(GPU)"}
COLORS = {"engine": "#d9822b", "numpy": "#4c78a8", "torch": "#7f7f7f", "engine_cuda": "#d9822b",
          "engine_cpu": "#f2b880", "torch_cuda": "#7f7f7f"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128, help="of the mlp section")
    parser.add_argument("--repeats", type=int, default=1000, help="timed steps per implementation")
    parser.add_argument("--block", type=int, default=100, help="timed steps in one turn")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before each turn")
    parser.add_argument("--epoch-repeats", type=int, default=3, help="timed epochs per implementation")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N functions where the engine's MLP step spends most time")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.block, args.epoch_repeats = 5, 2, 5, 1
    sections = args.only or SECTIONS

    process = configure_process()
    info = measure.machine_info("python -m benchmarks.engine")  # before torch loads its thread pools
    info["process"] = process
    torch_version = torch_threads = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(info["blas_threads"] or measure.usable_cores())
            torch_version, torch_threads = torch.__version__, torch.get_num_threads()
        except ImportError:
            pass
    with_torch = torch_version is not None
    info.update(torch=torch_version, torch_threads=torch_threads)
    report = {"benchmark": "engine", "machine": info}
    panels = []
    if "mlp" in sections:
        results, ratio = engine_mlp.run_mlp(args, with_torch)
        report.update(results=results, ratios=ratio)
        info.update(batch_size=args.batch_size, sizes=list(engine_mlp.SIZES), dtype="float32", lr=engine_mlp.LR,
                    grad_check={"rtol": engine_mlp.GRAD_RTOL, "atol_of_max": engine_mlp.GRAD_ATOL_OF_MAX,
                                "passed": True})
        panels.append((f"MLP {'-'.join(map(str, engine_mlp.SIZES))} step, batch {args.batch_size}", "ms",
                       results, ratio))
    if "lenet5" in sections:
        report["lenet5"] = engine_lenet5.run_lenet5(args, with_torch)
        panels.append(("LeNet-5 step, batch 64", "ms", report["lenet5"]["results"], report["lenet5"]["ratios"]))
    if "epoch" in sections:
        report["epoch"] = engine_epoch.run_epoch(args, with_torch)
        if "results" in report["epoch"]:
            panels.append((f"one epoch MLP 784-128-10,\nFashion-MNIST ({report['epoch']['images']:,}), batch 64",
                           "s", report["epoch"]["results"], report["epoch"]["ratios"]))
    if "gpu" in sections:
        report["gpu"] = engine_mlp.run_gpu(args, with_torch)
        if "results" in report["gpu"]:
            panels.append((f"GPU {report['gpu']['card']}: MLP step, batch 1024", "ms",
                           report["gpu"]["results"], report["gpu"]["ratios"]))
    info.update(repeats=args.repeats, warmup=args.warmup, block=args.block, quick=args.quick,
                load_average_after=list(os.getloadavg()), sections=list(sections))

    measure.save_json(report, args.out / "engine.json")
    if panels:
        title = (f"mpigrad engine vs NumPy and PyTorch, float32 | {info['cpu']}, {info['cores']} cores, "
                 f"BLAS threads {info['blas_threads']}, load {info['load_average_before'][0]:.2f}")
        measure.bar_panels(panels, title, args.out / "engine.png", LABELS, COLORS)
    print(f"\nwrote {args.out / 'engine.json'} and {args.out / 'engine.png'}")


if __name__ == "__main__":
    main()
