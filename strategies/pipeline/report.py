"""The pipeline's entries in the run's record (collective over the metrics communicator).

    stash_peak      [per world rank] the most micro-batches whose activations it held at once
                    (GPipe: M; 1F1B: min(M, p - stage); schedules.expected_stash_peak)
    stash_peak_bytes  [per world rank] the most bytes of stashed stage inputs at once
    stages          [per world rank] its pipeline position (grid.pp_rank)
    timeline        [per world rank] the last step's forwards and backwards,
                    [kind, micro, chunk, start, end], seconds from the earliest start
    bubble          [per world rank] 1 - (its forward + backward seconds) / (the step's
                    makespan over all ranks): the measured idle share of the last step, to set
                    beside (p - 1)/(M + p - 1) (GPipe, 1F1B) with --emulate-compute
"""
from strategies.messages import broadcast_json, gather_json


def pipeline_report(strategy, metrics_comm):
    ex = strategy.executor
    mine = {"stage": strategy.grid.pp_rank, "stash_peak": ex.stash_peak if ex else 0,
            "stash_peak_bytes": ex.stash_peak_bytes if ex else 0,
            "events": [list(e) for e in ex.events] if ex else []}
    everyone = gather_json(metrics_comm, mine)
    summary = None
    if metrics_comm.rank == 0:
        starts = [e[3] for v in everyone for e in v["events"]]
        ends = [e[4] for v in everyone for e in v["events"]]
        origin, makespan = (min(starts), max(ends) - min(starts)) if starts else (0.0, 0.0)
        summary = {"stages": [v["stage"] for v in everyone],
                   "stash_peak": [v["stash_peak"] for v in everyone],
                   "stash_peak_bytes": [v["stash_peak_bytes"] for v in everyone],
                   "timeline": [[[k, m, c, a - origin, b - origin] for k, m, c, a, b in v["events"]]
                                for v in everyone],
                   "bubble": [1 - sum(b - a for *_, a, b in v["events"]) / makespan if makespan else None
                              for v in everyone]}
    return broadcast_json(metrics_comm, summary)
