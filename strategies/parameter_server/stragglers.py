"""A deterministic straggler (MATH A10: nodes of different speed), so a laptop shows what a
cluster shows.

    --slow-rank r --slow-factor k: after each gradient, worker r sleeps (k - 1) c, where c is
    the compute time it just measured, so its step takes k c instead of c.

Measured, not fixed, so that "k times slower" holds whatever the model and the machine; the
sleep is counted as compute in the timeline (it stands for a slower processor). Which rank and
how much slower are flags, not chance: two runs see the same straggler.
"""
import time


class Straggler:
    """``delay(c)`` sleeps (factor - 1) c seconds; factor 1 (every other rank) never sleeps."""

    def __init__(self, factor=1.0):
        if factor < 1:
            raise ValueError(f"--slow-factor must be >= 1, got {factor}")
        self.factor = factor
        self.slept = 0.0     # seconds slept in all (the time split shows it as compute)

    def delay(self, compute_seconds):
        pause = (self.factor - 1) * compute_seconds
        if pause > 0:
            time.sleep(pause)
            self.slept += pause
