"""The strategy runner, with one rank killed by SIGKILL (kill -9) after a given step.

    mpirun -n 4 python -m mpi4py tests/mpi/killed_run.py --kill-rank 2 --kill-step 11 -- <runner flags>

The rank sends itself SIGKILL right after its step ``--kill-step`` (and after any checkpoint
of that step): no exception, no cleanup, no MPI_Abort, the process is simply gone mid-epoch,
as when the kernel's OOM killer or an operator strikes. Without --kill-rank it is the plain
runner. Used by tests/test_checkpoint_mpi.py.
"""
import argparse
import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root

from strategies import loop, train  # noqa: E402


def killing(train_epoch, rank, step):
    """``loop.train_epoch`` whose world rank ``rank`` SIGKILLs itself once its strategy has
    taken ``step`` steps (the strategy's own count: a parameter server's calls too)."""
    def wrapped(strategy, optimizer, loader, steps, bar=None, resume=None, after_step=None):
        def after(done, loss_sum, rows):
            if after_step is not None:
                after_step(done, loss_sum, rows)
            if strategy.comm.rank == rank and strategy.steps >= step:
                os.kill(os.getpid(), signal.SIGKILL)
        return train_epoch(strategy, optimizer, loader, steps, bar, resume, after)
    return wrapped


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-rank", type=int, default=None)
    parser.add_argument("--kill-step", type=int, default=None)
    ours, runner_flags = parser.parse_known_args()
    if runner_flags[:1] == ["--"]:
        runner_flags = runner_flags[1:]
    if ours.kill_rank is not None:
        loop.train_epoch = killing(loop.train_epoch, ours.kill_rank, ours.kill_step)
    return train.main(runner_flags)


if __name__ == "__main__":
    sys.exit(main())
