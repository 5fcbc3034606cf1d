"""Checkpoints in-process (strategies/checkpoint/): the file format, the directory's checks,
and resume == uninterrupted, bit for bit, for every deterministic strategy (threads world).

Each resume test trains 20 steps in one go, then 11 steps with a checkpoint every 3 (so the
newest is mid-way through epoch 2: 8 steps per epoch at batch 480), then resumes to 20 steps,
and compares the SHA-256 of the whole final model and the per-epoch losses.
"""
import json
import os

import numpy
import pytest

import collectives
from strategies.checkpoint import store
from strategies.checkpoint.state_file import decode, encode
from strategies.checkpoint.stateful import Stateful
from strategies.train import parse_args, run

COMMON = ["--batch-size", "480", "--epochs", "3", "--lr", "0.05", "--momentum", "0.9", "--quiet"]


def train(flags, ranks, *extra):
    args = parse_args([*COMMON, *flags, *extra])
    return collectives.spawn(lambda comm: run(args, comm), ranks, timeout=120)


def interrupted_then_resumed(flags, ranks, directory, cut=11, every=3, resume_ranks=None):
    saving = ["--checkpoint-dir", str(directory), "--checkpoint-every", str(every)]
    first = train(flags, ranks, "--max-steps", str(cut), *saving)[0]
    assert "error" not in first, first
    return train(flags, resume_ranks or ranks, "--max-steps", "20", *saving, "--resume")[0]


RESUMABLE = {
    "single": (["--strategy", "single"], 1),
    "dp ring": (["--strategy", "dp"], 2),
    "dp --overlap": (["--strategy", "dp", "--overlap", "--bucket-bytes", "20000"], 2),
    "local-sgd H=4": (["--strategy", "local-sgd", "--period", "4"], 3),
    "gossip ring": (["--strategy", "gossip"], 4),
    "ps-sync 1+2": (["--strategy", "ps-sync"], 3),
    "ps-sync 2+2": (["--strategy", "ps-sync", "--servers", "2"], 4),
    "pipeline 1f1b": (["--strategy", "pipeline", "--micro-batches", "4"], 2),
    "pipeline dp2 x pp2": (["--strategy", "pipeline", "--dp", "2", "--micro-batches", "2", "--schedule", "gpipe"], 4),
    "tp": (["--strategy", "tp"], 2),
    "dp topk + DGC": (["--strategy", "dp", "--compress", "topk", "--ratio", "0.05", "--momentum", "0",
                       "--momentum-correction", "0.9", "--warmup-steps", "4"], 3),
    "dp randomk": (["--strategy", "dp", "--compress", "randomk", "--ratio", "0.1"], 2),
    "dp qsgd": (["--strategy", "dp", "--compress", "qsgd"], 2),
    "dp powersgd": (["--strategy", "dp", "--compress", "powersgd", "--optimizer", "adam", "--lr", "0.001"], 2),
}


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_resume_is_bit_identical_to_the_uninterrupted_run(name, tmp_path):
    flags, ranks = RESUMABLE[name]
    whole = train(flags, ranks, "--max-steps", "20")[0]
    resumed = interrupted_then_resumed(flags, ranks, tmp_path)
    assert resumed["checkpoints"]["resumed_from_step"] == 9
    assert resumed["params_sha256"] == whole["params_sha256"]
    assert [e["loss"] for e in resumed["epochs"]] == [e["loss"] for e in whole["epochs"]]
    assert resumed["steps"] == whole["steps"] == 20


def test_an_asynchronous_server_checkpoints_at_epoch_ends_and_resumes(tmp_path):
    """ps-async has pushes in flight between steps: its checkpoint waits for the end of the
    epoch (step 8), and the resumed run completes (not bit-identical: arrival order)."""
    resumed = interrupted_then_resumed(["--strategy", "ps-async"], 3, tmp_path)
    assert resumed["checkpoints"]["resumed_from_step"] == 8
    assert resumed["steps"] == 20 and numpy.isfinite(resumed["final_loss"])


def test_dp_resumes_on_another_world_size(tmp_path):
    """dp 4 -> 2 ranks: the same global batches, so the same run up to float64 rounding."""
    flags = ["--strategy", "dp", "--dtype", "float64"]
    whole = train(flags, 4, "--max-steps", "20")[0]
    resumed = interrupted_then_resumed(flags, 4, tmp_path, resume_ranks=2)
    assert resumed["world_size"] == 2 and resumed["checkpoints"]["resumed_from_step"] == 9
    assert abs(resumed["final_loss"] - whole["final_loss"]) < 1e-10


def test_a_strategy_with_per_rank_state_refuses_another_world_size(tmp_path):
    saving = ["--checkpoint-dir", str(tmp_path), "--checkpoint-every", "3"]
    train(["--strategy", "local-sgd"], 4, "--max-steps", "6", *saving)
    record = train(["--strategy", "local-sgd"], 2, *saving, "--resume")[0]
    assert "written by 4 ranks" in record["error"] and "resume on 4 ranks" in record["error"]


def test_changed_flags_are_named(tmp_path):
    train(["--strategy", "dp"], 2, "--max-steps", "4", "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "2")
    record = train(["--strategy", "dp", "--lr", "0.2"], 2, "--checkpoint-dir", str(tmp_path), "--resume")[0]
    assert "--lr 0.05 (now 0.2)" in record["error"]
    record = train(["--strategy", "gossip"], 2, "--checkpoint-dir", str(tmp_path), "--resume")[0]
    assert "--strategy dp" in record["error"]


def _damage(directory, step, how):
    folder = store.folder(str(directory), step)
    if how == "manifest":
        os.remove(os.path.join(folder, "manifest.json"))
    elif how == "missing":
        os.remove(os.path.join(folder, store.rank_file(1)))
    elif how == "truncated":
        path = os.path.join(folder, store.rank_file(0))
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    elif how == "corrupted":
        path = os.path.join(folder, store.rank_file(1))
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("how, reason", [("manifest", "no manifest.json"), ("missing", "missing"),
                                         ("truncated", "truncated"), ("corrupted", "corrupted")])
def test_a_torn_checkpoint_is_named_and_the_previous_one_used(how, reason, tmp_path, capsys):
    flags = ["--strategy", "dp"]
    whole = train(flags, 2, "--max-steps", "20")[0]
    saving = ["--checkpoint-dir", str(tmp_path), "--checkpoint-every", "3"]
    train(flags, 2, "--max-steps", "11", *saving)
    _damage(tmp_path, 9, how)
    args = parse_args([*COMMON, *flags, "--max-steps", "20", *saving, "--resume"])
    args.quiet = False
    resumed = collectives.spawn(lambda comm: run(args, comm), 2, timeout=120)[0]
    out = capsys.readouterr().out
    assert f"step-00000009: " in out and reason in out
    assert resumed["checkpoints"]["resumed_from_step"] == 6
    assert resumed["params_sha256"] == whole["params_sha256"]


def test_only_the_newest_k_are_kept_and_none_whole_is_an_error(tmp_path):
    train(["--strategy", "dp"], 2, "--max-steps", "11", "--checkpoint-dir", str(tmp_path),
          "--checkpoint-every", "3", "--keep-checkpoints", "2")
    assert store.steps_on_disk(str(tmp_path)) == [9, 6]
    for step in (9, 6):
        _damage(tmp_path, step, "corrupted")
    record = train(["--strategy", "dp"], 2, "--checkpoint-dir", str(tmp_path), "--resume")[0]
    assert "no whole checkpoint" in record["error"]


def test_resume_with_an_empty_directory_starts_at_step_0(tmp_path):
    record = train(["--strategy", "dp"], 2, "--max-steps", "3", "--checkpoint-dir", str(tmp_path / "new"), "--resume")[0]
    assert record["checkpoints"]["resumed_from_step"] is None and record["steps"] == 3


@pytest.mark.parametrize("extra, message", [
    (["--resume"], "--resume needs --checkpoint-dir"),
    (["--checkpoint-dir", "FILE"], "--checkpoint-dir"),
    (["--checkpoint-dir", "DIR", "--checkpoint-every", "0"], "--checkpoint-every and --keep-checkpoints must be >= 1"),
])
def test_bad_checkpoint_flags_are_rejected_before_training(extra, message, tmp_path):
    (tmp_path / "FILE").write_text("not a directory")
    extra = [str(tmp_path / e) if e in ("FILE", "DIR") else e for e in extra]
    record = train(["--strategy", "dp"], 2, *extra)[0]
    assert message in record["error"]


def test_the_manifest_names_every_rank_file_with_its_hash(tmp_path):
    train(["--strategy", "ps-sync"], 3, "--max-steps", "4", "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "3")
    manifest = json.loads((tmp_path / "step-00000003" / "manifest.json").read_text())
    assert [f["file"] for f in manifest["files"]] == ["rank-00000.npz", "rank-00001.npz", "rank-00002.npz"]
    for entry in manifest["files"]:
        data = (tmp_path / "step-00000003" / entry["file"]).read_bytes()
        assert store.sha256(data) == entry["sha256"] and len(data) == entry["bytes"]
    assert manifest["world_size"] == 3 and manifest["strategy"] == "ps-sync" and manifest["step"] == 3
    server = decode((tmp_path / "step-00000003" / "rank-00000.npz").read_bytes())
    assert server["strategy"]["version"] == 3 and server["position"]["done"] == 3


# -- the file format and the attribute snapshots -------------------------------------------------
def test_state_file_round_trips_every_kind_of_value():
    rng = numpy.random.default_rng(5)
    tree = {"a": numpy.arange(6, dtype=numpy.float32).reshape(2, 3), "n": 3, "x": 0.1 + 0.2,
            "nan": float("nan"), "none": None, "t": (1, "two", numpy.ones(2)), "s": {3, 1, 2},
            "hist": {0: 5, 2: 1}, "list": [numpy.zeros(0), {"deep": True}], "flag": False,
            "rng": rng.bit_generator.state, "np": numpy.float64(2.5)}
    back = decode(encode(tree))
    assert back["a"].dtype == numpy.float32 and numpy.array_equal(back["a"], tree["a"])
    assert back["n"] == 3 and back["x"] == 0.1 + 0.2 and numpy.isnan(back["nan"]) and back["none"] is None
    assert back["t"][:2] == (1, "two") and isinstance(back["t"], tuple) and numpy.array_equal(back["t"][2], numpy.ones(2))
    assert back["s"] == {1, 2, 3} and back["hist"] == {0: 5, 2: 1} and back["flag"] is False
    assert back["list"][0].shape == (0,) and back["list"][1] == {"deep": True}
    assert back["rng"] == tree["rng"] and back["np"] == 2.5


def test_state_file_rejects_what_it_cannot_store_and_names_unreadable_files():
    with pytest.raises(TypeError, match="cannot store a object"):
        encode({"x": object()})
    with pytest.raises(ValueError, match="rank-00003.npz: not a readable checkpoint"):
        decode(b"not a zip file", "rank-00003.npz")


class _Counter(Stateful):
    state_attributes = ("count", "buffer", "rng")

    def __init__(self):
        self.count, self.buffer, self.rng = 0, numpy.zeros(3), numpy.random.default_rng(1)


def test_stateful_restores_counters_buffers_and_the_next_random_draw():
    a = _Counter()
    a.count, a.buffer[:] = 7, [1, 2, 3]
    a.rng.random(5)
    saved = decode(encode(a.state_dict()))
    expected = a.rng.random()
    b = _Counter()
    b.load_state_dict(saved)
    assert b.count == 7 and numpy.array_equal(b.buffer, [1, 2, 3]) and b.rng.random() == expected
    saved["buffer"] = numpy.zeros(4)
    with pytest.raises(ValueError, match=r"_Counter.load_state_dict: buffer holds float64 \(3,\)"):
        b.load_state_dict(saved)
    with pytest.raises(ValueError, match="unexpected entries"):
        b.load_state_dict({"bogus": 1})
