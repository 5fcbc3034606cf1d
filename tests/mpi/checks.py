"""What the mpirun check scripts (strategy_checks.py, ps_checks.py, pipeline_checks.py) share:
one checked run of the runner that saves its whole model, and a line on rank 0 per check."""
from strategies import train


def run_saved(args, on, data, path=None):
    """``strategies.train.run(args, on, data)``, asserting that it ran, with the whole final
    model written to ``path`` (None: not saved; give a path on one rank only, the file is that
    rank's); then a barrier over ``on``, so that no rank reads the file before it is written."""
    args.save_params = str(path) if path else None
    record = train.run(args, on, data)
    assert "error" not in record, record
    on.barrier()
    return record


def reporter(comm):
    """(say, ok): print on rank 0 only; ok(what, value) prints "ok  what  (value)"."""
    say = print if comm.rank == 0 else (lambda *a, **k: None)

    def ok(what, value=None):
        say(f"ok  {what}" + ("" if value is None else f"  ({value:.2e})"), flush=True)
    return say, ok
