"""Tutorial 12: faults and checkpoints - kill -9 a rank, resume bit for bit, catch a NaN, a hung rank (MATH A8, A9).

    python tutorials/12_faults_and_checkpoints.py
    python tutorials/12_faults_and_checkpoints.py --quick     # 150 steps instead of 300 (used by the tests)

Killing one rank of an mpirun job ends the whole job, so this script is a DRIVER, run with plain
python: it launches mpirun -n 4 python -m mpi4py -m strategies.train ... itself, from the repository
root with one BLAS thread per rank, and prints every command, to be typed by hand too ($D: the
scratch directory it prints first). The steps:
  1. the uninterrupted run: dp on 4 ranks, the MLP on the bundled MNIST, SGD with momentum;
     its record's params_sha256 is the reference;
  2. the same with --checkpoint-dir $D/ck --checkpoint-every C, and a real kill -9 of rank 2 once
     the first manifest exists: mpirun exits non-zero at once; the directory and a manifest;
  3. the same command with --resume: it starts from the newest whole checkpoint, redoes at
     most C steps (MATH A9) and ends with the reference's params_sha256, bit for bit;
  4. a torn checkpoint: one byte of a rank file flipped in the newest, a rank file of the next
     truncated; --resume names both with their reason and uses the one before, still exact;
  5. the NaN guard (MATH A8, strategies/nan_guard.py): with --lr 1e20 the loss is NaN at step 2;
     --on-nan stop (the default) exits 1 naming rank and step, --on-nan skip drops such steps on
     every rank and counts them (nan_steps_skipped);
  6. the watchdog (collectives/watchdog.py): --timeout 3 and kill -STOP of rank 2: the others
     print "mpigrad watchdog: ... no progress" after 3 s and the job exits instead of hanging;
  7. ends with PASS or FAIL.
Read strategies/checkpoint/ (keeper.py: what is saved; store.py: the directory, torn checkpoints).
"""
import argparse
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
HERE = pathlib.Path(sys.executable).parent
MPIRUN = next((str(HERE / n) for n in ("mpirun", "mpiexec") if (HERE / n).exists()), None) or shutil.which("mpirun")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1",
           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
KILL_RANK = 2
TOO_LONG = 30                     # seconds: a job with a dead or stopped rank must be gone well before


class Driver:
    """The scratch directory D, the flags of the run, and the checks so far."""

    def __init__(self, quick=False, work=None):
        self.D = pathlib.Path(work or tempfile.mkdtemp(prefix="mpigrad-12-"))
        self.steps, self.every = (150, 10) if quick else (300, 20)
        self.options = dict(strategy="dp", batch_size=64, epochs=5, max_steps=self.steps, lr=0.05, momentum=0.9)
        self.flags, self.checks = self.changed(), {}
        self.saving = ["--checkpoint-dir", str(self.D / "ck"), "--checkpoint-every", str(self.every),
                       "--keep-checkpoints", "3"]

    def changed(self, **changes):
        """The run's flags, with ``changes`` (max_steps=20: --max-steps 20; None: left out)."""
        options = self.options | changes
        return [item for k, v in options.items() if v is not None for item in (f"--{k.replace('_', '-')}", str(v))]

    # -- running commands -------------------------------------------------------------------
    def shown(self, command):
        text = " ".join(command).replace(MPIRUN, "mpirun").replace(sys.executable, "python")
        return text.replace(str(self.D), "$D")

    def start(self, *flags):
        command = [MPIRUN, "-n", "4", sys.executable, "-m", "mpi4py", "-m", "strategies.train", *flags]
        print("$ " + self.shown(command), flush=True)
        # A session of its own: on a timeout the whole group (mpirun and every rank) is killed.
        return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)

    def train(self, *flags, timeout=120):
        return finish(self.start(*flags), timeout)

    def record(self, name):
        return json.loads((self.D / name).read_text())

    def lines(self, output, starts):                   # the lines that begin so, D shown as $D
        return [line.replace(str(self.D), "$D") for line in output.splitlines() if line.startswith(starts)]

    def check(self, what, ok):
        self.checks[what] = bool(ok)

    def whole(self):
        """The steps of the checkpoints with a manifest, newest first."""
        return sorted((int(p.parent.name[5:]) for p in (self.D / "ck").glob("step-*/manifest.json")), reverse=True)


def finish(job, timeout=120):
    """(exit code, stdout + stderr) of ``job``; past ``timeout`` s its group is killed."""
    try:
        out, err = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    return job.returncode, out + err


def rank_pid(rank, marker):
    """The pid of MPI rank ``rank`` of the job whose command line holds ``marker``: the python
    process with PMI_RANK=rank in its environment (MPICH's hydra sets it for each rank)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and "python" in cmdline and f"PMI_RANK={rank}".encode() in environ:
            return int(pid)
    return None


def wait_for(path, job, limit=120):
    deadline = time.monotonic() + limit
    while not path.exists():
        if job.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared: {finish(job)[1]}")
        time.sleep(0.01)


def uninterrupted(t):
    """1. The reference: the same flags, no checkpoints, never interrupted."""
    code, output = t.train(*t.flags, "--quiet", "--out", str(t.D / "reference.json"))
    t.reference = t.record("reference.json")["params_sha256"]
    print(f"exit code {code}; {t.steps} steps; params_sha256 {t.reference}")
    t.check(f"the uninterrupted run ends (exit 0) after {t.steps} steps", code == 0)


def kill_9(t):
    """2. Checkpoints every C steps, and kill -9 of rank 2 once the first one is whole."""
    job = t.start(*t.flags, *t.saving, "--quiet")
    wait_for(t.D / "ck" / f"step-{t.every:08d}" / "manifest.json", job)
    pid = rank_pid(KILL_RANK, str(t.D))
    if pid is None:
        raise RuntimeError(f"rank {KILL_RANK} was gone before the kill: {finish(job)[1][-2000:]}")
    print(f"# the pid of rank {KILL_RANK}: the process with PMI_RANK={KILL_RANK} in /proc/PID/environ, e.g.\n"
          f"#   for p in $(pgrep -f \"$D\"); do grep -qz '^PMI_RANK={KILL_RANK}$' /proc/$p/environ && echo $p; done")
    print(f"$ kill -9 {pid}        # once $D/ck/step-{t.every:08d}/manifest.json exists", flush=True)
    os.kill(pid, signal.SIGKILL)
    tic = time.monotonic()
    code, output = finish(job, timeout=TOO_LONG + 30)
    took = time.monotonic() - tic
    print(f"mpirun exited {took:.1f} s after the kill, exit code {code}; MPICH says:")
    for line in t.lines(output, ("=   BAD", "=   EXIT CODE", "YOUR APPLICATION TERMINATED")):
        print("   " + line.strip("= "))
    time.sleep(0.5)                                        # the kernel reaps what hydra killed
    t.check(f"kill -9 of rank {KILL_RANK}: mpirun exits non-zero within {TOO_LONG} s", code != 0 and took < TOO_LONG)
    t.check("no rank outlives the job", all(rank_pid(r, str(t.D)) is None for r in range(4)))
    print("$ ls $D/ck/*")
    for folder in sorted((t.D / "ck").glob("step-*")):
        names = sorted(p.name for p in folder.iterdir())
        state = "whole" if "manifest.json" in names else "TORN: no manifest, --resume skips it"
        print(f"  {folder.name}: {' '.join(names)}   ({state})")
    t.check("at least one whole checkpoint on disk after the kill", t.whole())
    step = t.whole()[0]
    manifest = json.loads((t.D / "ck" / f"step-{step:08d}" / "manifest.json").read_text())
    print(f"$ cat $D/ck/step-{step:08d}/manifest.json      # config, loss sums left out")
    short = {k: v for k, v in manifest.items() if k not in ("config", "files", "loss_sum", "rows")}
    print("  " + json.dumps(short))
    for entry in manifest["files"]:
        print(f"  {entry['file']}: {entry['bytes']:,} bytes, sha256 {entry['sha256'][:16]}...")


def resume(t, name):
    """The same command line plus --resume; prints what the runner says it skipped and used."""
    code, output = t.train(*t.flags, *t.saving, "--resume", "--out", str(t.D / name))
    for line in t.lines(output, ("checkpoint skipped", "resumed from", "no checkpoint", "strategies.train: error")):
        print("  " + line)
    r = t.record(name)
    print(f"exit code {code}; resumed from step {r['checkpoints']['resumed_from_step']}, {r['steps']} steps;"
          f" params_sha256 {r['params_sha256']}\n                                   reference {t.reference}")
    return code, output, r


def resume_after_kill(t):
    """3. --resume: from the newest whole checkpoint to the same bits as the reference."""
    newest = t.whole()[0]
    code, _, r = resume(t, "resumed.json")
    print(f"the kill came before step {newest + t.every}'s checkpoint was whole: at most C = {t.every} steps "
          f"of work were lost and done again (MATH A9)")
    t.check("--resume starts from the newest whole checkpoint",
            r["checkpoints"]["resumed_from_step"] == newest)
    t.check("--resume after kill -9 == the uninterrupted run (params_sha256, bit for bit)",
            code == 0 and r["steps"] == t.steps and r["params_sha256"] == t.reference)


def torn_checkpoints(t):
    """4. Flip one byte of a rank file of the newest checkpoint, truncate one of the next."""
    newest, second, third = t.whole()[:3]
    flipped = t.D / "ck" / f"step-{newest:08d}" / "rank-00001.npz"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(data)
    print(f"# flip byte {len(data) // 2:,} of $D/ck/step-{newest:08d}/rank-00001.npz (x ^= 0xff)")
    cut = t.D / "ck" / f"step-{second:08d}" / "rank-00003.npz"
    os.truncate(cut, cut.stat().st_size // 2)
    print(f"$ truncate -s {cut.stat().st_size} $D/ck/step-{second:08d}/rank-00003.npz")
    code, output, r = resume(t, "resumed_torn.json")
    t.check(f"--resume names the corrupted step {newest} and the truncated step {second}",
            f"step-{newest:08d}: rank-00001.npz: SHA-256 differs" in output
            and f"step-{second:08d}: rank-00003.npz: " in output and "(truncated?)" in output)
    t.check(f"... and resumes from the whole one before them (step {third})",
            r["checkpoints"]["resumed_from_step"] == third)
    t.check("--resume past two torn checkpoints == the uninterrupted run (bit for bit)",
            code == 0 and r["params_sha256"] == t.reference)


NAN = re.compile(r"--on-nan stop: rank (\d+) of 4, step (\d+): .*?steps\)")


def nan_guard(t):
    """5. --lr 1e20: the loss is NaN by step 2; stop exits 1 naming it, skip drops the steps."""
    diverging = [*t.changed(max_steps=20, lr="1e20", momentum=None), "--quiet"]
    code, output = t.train(*diverging)
    found = sorted(NAN.finditer(output), key=lambda m: int(m.group(1)))      # each rank that printed first
    print(f"exit code {code}; {len(found)} rank(s) report, e.g.\n  {found[0].group(0) if found else output[-2000:]}")
    t.check("--on-nan stop: a diverging run exits 1, its message names the rank and the step", code == 1 and found)
    code, output = t.train(*diverging, "--on-nan", "skip", "--out", str(t.D / "nan_skip.json"))
    r = t.record("nan_skip.json")
    print(f"exit code {code}; nan_steps_skipped {r['nan_steps_skipped']} of {r['steps']}, "
          f"test accuracy {r['final_test_accuracy']:.3f} (chance: 0.1)\n"
          "  skip is for a rare bad batch: here step 1 already threw the weights to ~1e20, so every later\n"
          "  step is NaN too and is dropped; the count in the record is what tells the two apart")
    t.check("--on-nan skip: the run finishes (exit 0) and counts the dropped steps",
            code == 0 and r["nan_steps_skipped"] > 0)


def watchdog(t, timeout=3):
    """6. kill -STOP one rank of a long run with --timeout 3: the job ends instead of hanging."""
    marker = t.D / "watchdog"
    job = t.start(*t.changed(epochs=1000, max_steps=None), "--quiet", "--timeout", str(timeout),
                  "--checkpoint-dir", str(marker), "--checkpoint-every", "10")
    pid = None
    try:
        wait_for(marker / f"step-{10:08d}" / "manifest.json", job)
        pid = rank_pid(KILL_RANK, str(marker))
        print(f"$ kill -STOP {pid}      # rank {KILL_RANK}, once training runs", flush=True)
        os.kill(pid, signal.SIGSTOP)
        tic = time.monotonic()
        code, output = finish(job, timeout=TOO_LONG + 30)
        took = time.monotonic() - tic
    finally:                                  # never leave a stopped process (or the job) behind
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        if pid is not None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
    fired = [line for line in output.splitlines() if line.startswith("mpigrad watchdog: rank")]
    print(f"mpirun exited {took:.1f} s after the SIGSTOP, exit code {code}; {len(fired)} rank(s) said, e.g.\n  "
          + (fired[0] if fired else output[-2000:]))
    t.check(f"kill -STOP + --timeout {timeout}: exit non-zero within {TOO_LONG} s, with the watchdog's line",
            code != 0 and took < TOO_LONG and fired)
    t.check(f"the stopped rank {KILL_RANK} is not one that fired", all(f"rank {KILL_RANK} of" not in f for f in fired))


def verdict(t):                              # as tutorials/ranks.py's, for one driver process
    print("checks")
    for what, ok in t.checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'}  {what}")
    passed = bool(t.checks) and all(t.checks.values())
    print("PASS" if passed else "FAIL")
    return passed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="150 steps, a checkpoint every 10 (the tests)")
    parser.add_argument("--work", default=None, help="the scratch directory $D, kept (default: a temporary one)")
    args = parser.parse_args()
    if MPIRUN is None:
        return print("needs mpirun (pip install -e '.[mpi]')\nFAIL") or 1
    t = Driver(args.quick, args.work)
    print(f"D={t.D}    # every command below runs from the repository root, with OMP_NUM_THREADS=1 "
          "OPENBLAS_NUM_THREADS=1")
    tic = time.monotonic()
    try:
        for step, title in [(uninterrupted, "1. the uninterrupted run"),
                            (kill_9, f"2. checkpoints every {t.every} steps, kill -9 of rank {KILL_RANK}"),
                            (resume_after_kill, "3. --resume (MATH A9: at most C steps redone)"),
                            (torn_checkpoints, "4. torn checkpoints are skipped"),
                            (nan_guard, "5. the NaN guard (MATH A8)"),
                            (watchdog, "6. the watchdog: a stopped rank")]:
            print(f"\n== {title}")
            step(t)
        print(f"\n({time.monotonic() - tic:.1f} s)")
    finally:
        if args.work is None:
            shutil.rmtree(t.D, ignore_errors=True)
    return 0 if verdict(t) else 1


if __name__ == "__main__":
    sys.exit(main())
