"""The runner's JSON record: what was trained, what it reached, what it sent (measured and by
formula), per role and per communicator, and a hash of the whole final model.

Everything here is collective over ``metrics_comm`` (its traffic counts on no parent, so it
never shows in what training sent) and returns the same values on every rank.

    traffic(comm, strategy, steps, metrics_comm) -> {"roles": ..., "communicators": ...}

    roles:          {"worker": {"ranks": 3, "bytes_sent_per_rank": ..., "formula_...": ...},
                     "server": {...}}                         mean over the ranks of that role
    communicators:  {"world": {...}, "world/dp": {...}}       summed over every rank's view
"""
import hashlib
import json
import math
import os

import numpy

from strategies.messages import broadcast_json, gather_json


def params_sha256(model):
    """SHA-256 of the parameters' raw bytes, in ``parameters()`` order (bit-identical models,
    and only those, have the same hash)."""
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(numpy.ascontiguousarray(p.data).tobytes())
    return digest.hexdigest()


def traffic(comm, strategy, steps, metrics_comm):
    """Measured bytes per role and per communicator, beside the strategy's formula (see above)."""
    mine = {"role": strategy.role, "bytes_sent": comm.counters.bytes_sent,
            "messages_sent": comm.counters.messages_sent,
            "bytes_received": comm.counters.bytes_received, "communicators": comm.traffic(),
            "formula": strategy.bytes_for_steps(steps)}      # may name only this rank's role
    everyone = gather_json(metrics_comm, mine)
    summary = None
    if metrics_comm.rank == 0:
        summary = {"roles": _by_role(everyone, steps),
                   "communicators": _by_communicator(everyone)}
    return broadcast_json(metrics_comm, summary)


def _by_role(everyone, steps):
    """Counters summed over the ranks of each role, as means per rank; the formula of the role
    as its ranks state it (None when one of them does not model it)."""
    roles = {}
    for rank, view in enumerate(everyone):
        entry = roles.setdefault(view["role"], {"ranks": [], "bytes_sent": 0, "bytes_received": 0,
                                                "messages_sent": 0, "formulas": []})
        entry["ranks"].append(rank)
        for key in ("bytes_sent", "bytes_received", "messages_sent"):
            entry[key] += view[key]
        entry["formulas"].append((view["formula"] or {}).get(view["role"]))
    for entry in roles.values():
        k, formulas = len(entry["ranks"]), entry.pop("formulas")
        for key in ("bytes_sent", "bytes_received", "messages_sent"):
            entry[f"{key}_per_rank"] = entry.pop(key) / k
        entry["bytes_sent_per_rank_per_step"] = entry["bytes_sent_per_rank"] / steps
        entry["formula_bytes_sent_per_rank_per_step"] = (
            None if None in formulas else sum(formulas) / k / steps)
    return roles


def _by_communicator(everyone):
    table = {}
    for view in everyone:
        for name, counts in view["communicators"].items():
            entry = table.setdefault(name, {key: 0 for key in counts} | {"ranks": 0})
            entry["ranks"] += 1
            for key, value in counts.items():
                entry[key] += value
    return table


def mean_formula_per_step(roles):
    """The formula's bytes per rank per step averaged over all ranks (None if any role is not
    modelled): comparable with the measured mean over ranks."""
    total, ranks = 0.0, 0
    for entry in roles.values():
        if entry["formula_bytes_sent_per_rank_per_step"] is None:
            return None
        total += entry["formula_bytes_sent_per_rank_per_step"] * len(entry["ranks"])
        ranks += len(entry["ranks"])
    return total / ranks


def write_outputs(record, model, args, rank):
    """Rank 0 writes --save-params (the whole model's state dict) and --out (the record), each
    atomically: a good file from an earlier run is replaced only by a complete new one."""
    if rank != 0:
        return
    if args.save_params:
        atomic_write(args.save_params, lambda f: numpy.savez(f, **model.state_dict()), binary=True)
    if args.out:
        atomic_write(args.out, lambda f: json.dump(strict_json(record), f, indent=1, allow_nan=False))


def atomic_write(path, write, binary=False):
    """``write(file)`` into ``path``.tmp, flushed and fsynced, then renamed onto ``path``: a
    crash or a full disk leaves the old ``path`` whole. Writes exactly ``path`` (numpy.savez
    given a file object appends no ``.npz``)."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def strict_json(value):
    """``value`` with every NaN and infinity replaced by None: JSON has no such numbers, and a
    record with a ``NaN`` token is not JSON that other tools can read."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def loadavg():
    return list(os.getloadavg())
