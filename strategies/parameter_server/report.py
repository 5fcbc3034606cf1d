"""The parameter server's entries in the run's record (collective over the metrics communicator).

    staleness_histogram   {"tau": count} over every update applied, by every server (S blocks:
                          a worker's push is S updates, one per block); JSON keys are strings
    mean_staleness        sum tau count / sum count            (None before any update)
    updates_applied       sum of the counts: steps x W per server without backup workers
    gradients_dropped     pushes dropped (ps-sync --backup-workers), over all servers
    chunks_per_worker     {"world rank": chunks it computed}: the schedule's hand-out (equal
                          without a straggler; a slow worker gets fewer under ps-async)
    reply_clock_leads     {"c_k - min c": count} when each reply was sent (ps-async, ps-ssp:
                          SSP keeps every key <= s)
    time_split            {role: {compute, push, pull, wait}} seconds, mean per rank of the role
                          (a server's optimiser step, "apply", counts as its compute)
    timeline              [[kind, start, end], ...] per rank, the first timeline.LIMIT events,
                          seconds from the earliest rank's start (one clock: time.time())

One gather to rank 0 and one broadcast of the summary (strategies.messages): linear in K,
metadata only.
"""
from strategies.messages import broadcast_json, gather_json

SPLIT = ("compute", "push", "pull", "wait")


def gather(strategy, metrics_comm):
    """The entries above, the same dict on every rank."""
    t = strategy.timeline
    mine = {"role": strategy.role, "pushes": strategy.pushes, "staleness": strategy.staleness, "dropped": strategy.dropped,
            "leads": strategy.clock_leads, "totals": t.totals, "origin": t.origin, "events": t.events}
    everyone = gather_json(metrics_comm, mine)
    return broadcast_json(metrics_comm, summarise(everyone) if metrics_comm.rank == 0 else None)


def summarise(everyone):
    """The record's entries from every rank's view (a list by rank)."""
    histogram, leads = _summed(v["staleness"] for v in everyone), _summed(v["leads"] for v in everyone)
    applied = sum(histogram.values())
    mean = sum(int(tau) * count for tau, count in histogram.items()) / applied if applied else None
    split = {}
    for view in everyone:
        role = split.setdefault(view["role"], {"ranks": 0, **{kind: 0.0 for kind in SPLIT}})
        role["ranks"] += 1
        totals = view["totals"]
        for kind in SPLIT:
            role[kind] += totals[kind] + (totals["apply"] if kind == "compute" else 0.0)
    for role in split.values():
        for kind in SPLIT:
            role[kind] /= role["ranks"]
        del role["ranks"]
    start = min(v["origin"] for v in everyone)
    timeline = [[[kind, a - start, b - start] for kind, a, b in v["events"]] for v in everyone]
    return {"staleness_histogram": histogram, "mean_staleness": mean, "updates_applied": applied,
            "gradients_dropped": sum(v["dropped"] for v in everyone), "reply_clock_leads": leads,
            "chunks_per_worker": {str(rank): v["pushes"] for rank, v in enumerate(everyone)
                                  if v["role"] == "worker"},
            "time_split": split, "timeline": timeline}


def _summed(tables):
    """{key: count} tables added up, keys as strings in numeric order (JSON keys are strings)."""
    total = {}
    for table in tables:
        for key, count in table.items():
            total[int(key)] = total.get(int(key), 0) + count
    return {str(key): total[key] for key in sorted(total)}
