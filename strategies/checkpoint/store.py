"""The checkpoint directory (MATH A9): one folder per checkpoint, one file per rank, one manifest.

    D/step-00000120/rank-00000.npz        each rank's own state (state_file.py), atomic
    D/step-00000120/rank-00001.npz
    D/step-00000120/manifest.json         written by rank 0 LAST, once every rank's file is on disk

The manifest names every rank's file with its size and SHA-256, so a checkpoint is whole
exactly when its manifest is there and every file it names matches:

    no manifest           the job died while writing it (partial): skipped
    a file missing        one rank died before renaming its file: skipped
    size or hash differ   truncated or corrupted on disk: skipped
Each skipped checkpoint is named with its reason and the newest whole one is used: the
previous good checkpoint survives anything that happens while the next is written, because
nothing older is deleted until a newer manifest exists (``prune`` keeps the K newest whole ones).

Every write is temp file, fsync, rename (strategies/record.py ``atomic_write``): a reader
sees the old file or the new one, never half of one. The directory must be one that every
rank sees (a shared file system), as with torch.distributed.checkpoint.
"""
import hashlib
import json
import os
import re
import shutil

from strategies.record import atomic_write

FORMAT = 1
_FOLDER = re.compile(r"^step-(\d{8,})$")


def folder(directory, step):
    return os.path.join(directory, f"step-{step:08d}")


def rank_file(rank):
    return f"rank-{rank:05d}.npz"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_rank_file(directory, step, rank, data):
    """This rank's bytes into the step's folder; returns its manifest entry."""
    path = folder(directory, step)
    os.makedirs(path, exist_ok=True)
    atomic_write(os.path.join(path, rank_file(rank)), lambda f: f.write(data), binary=True)
    return {"file": rank_file(rank), "bytes": len(data), "sha256": sha256(data)}


def write_manifest(directory, step, manifest):
    atomic_write(os.path.join(folder(directory, step), "manifest.json"),
                 lambda f: json.dump(manifest, f, indent=1, allow_nan=False))


def steps_on_disk(directory):
    """The step of every checkpoint folder in ``directory``, newest first."""
    if not os.path.isdir(directory):
        return []
    found = (_FOLDER.match(name) for name in os.listdir(directory))
    return sorted((int(m.group(1)) for m in found if m), reverse=True)


def read_manifest(directory, step):
    """(manifest, None) when the checkpoint of ``step`` is whole, else (None, why not)."""
    path = folder(directory, step)
    try:
        with open(os.path.join(path, "manifest.json")) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None, "no manifest.json (the job stopped while writing it)"
    except (OSError, ValueError) as exc:
        return None, f"manifest.json unreadable ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        return None, f"manifest.json is not a format-{FORMAT} manifest"
    for entry in manifest["files"]:
        problem = _check_file(os.path.join(path, entry["file"]), entry)
        if problem:
            return None, f"{entry['file']}: {problem}"
    return manifest, None


def read_rank_file(directory, step, entry):
    """The bytes of one rank's file, checked against its manifest entry (ValueError if not)."""
    path = os.path.join(folder(directory, step), entry["file"])
    with open(path, "rb") as f:
        data = f.read()
    problem = _describe(data, entry)
    if problem:
        raise ValueError(f"checkpoint {path}: {problem}")
    return data


def _check_file(path, entry):
    try:
        with open(path, "rb") as f:
            return _describe(f.read(), entry)
    except FileNotFoundError:
        return "missing (a rank stopped before writing it)"
    except OSError as exc:
        return f"unreadable ({exc})"


def _describe(data, entry):
    if len(data) != entry["bytes"]:
        return f"{len(data)} bytes, the manifest says {entry['bytes']} (truncated?)"
    if sha256(data) != entry["sha256"]:
        return "SHA-256 differs from the manifest's (corrupted)"
    return None


def prune(directory, keep):
    """Delete every checkpoint older than the ``keep`` newest with a manifest (the newest is
    the one just written; its files were hashed as they were written)."""
    whole = [step for step in steps_on_disk(directory)
             if os.path.exists(os.path.join(folder(directory, step), "manifest.json"))]
    if len(whole) < keep:
        return
    oldest_kept = whole[keep - 1]
    for step in steps_on_disk(directory):
        if step < oldest_kept:
            shutil.rmtree(folder(directory, step), ignore_errors=True)
