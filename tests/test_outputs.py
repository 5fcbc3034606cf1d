"""The runner's outputs and flags, tried as a tester would (issue 14, first part): --out and
--save-params are checked before training and written atomically, --save-params writes exactly
the path given, the record is strict JSON (no NaN tokens), --max-steps 0 and non-finite --lr /
--momentum are one clear error on every rank."""
import json
import math

import numpy as np
import pytest

import collectives
from strategies import loop, train
from strategies.record import atomic_write, strict_json


@pytest.fixture(scope="module")
def data():
    return loop.load_data(train.parse_args([]))


def run(data, ranks, *flags):
    args = train.parse_args(["--quiet", "--epochs", "1", "--max-steps", "2", *flags])
    return collectives.spawn(lambda comm: train.run(args, comm, data), ranks, timeout=30)


def test_save_params_writes_exactly_the_path_given_and_out_is_strict_json(data, tmp_path):
    params, out = tmp_path / "model.params", tmp_path / "record.json"
    record = run(data, 2, "--save-params", str(params), "--out", str(out))[0]
    assert params.exists() and not (tmp_path / "model.params.npz").exists()
    with np.load(params) as saved:
        assert set(saved.files) == {name for name, _ in __import__("engine").models.build("mlp").named_parameters()}
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text and json.loads(text)["steps"] == record["steps"]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "record.json"
    path.write_text('{"good": true}')

    def half_then_fail(f):
        f.write('{"half": ')
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"good": True} and not (tmp_path / "record.json.tmp").exists()


def test_strict_json_replaces_nan_and_infinity_by_null():
    value = {"loss": math.nan, "rates": [1.0, math.inf, -math.inf], "nested": {"x": (2, math.nan)}}
    assert json.dumps(strict_json(value), allow_nan=False) == \
        '{"loss": null, "rates": [1.0, null, null], "nested": {"x": [2, null]}}'


@pytest.mark.parametrize("flags, message", [
    (["--max-steps", "0"], "--max-steps must be >= 1, got 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--momentum", "inf"], "--momentum finite >= 0"),
    (["--out", "{tmp}"], "is a directory (give a file name)"),
    (["--save-params", "{tmp}/no/such/dir/p.npz"], "--save-params {tmp}/no/such/dir/p.npz: no such directory"),
])
def test_bad_outputs_and_flags_are_one_clear_error_on_every_rank(data, tmp_path, flags, message):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    records = run(data, 2, *flags)
    assert message.replace("{tmp}", str(tmp_path)) in records[0].get("error", ""), records[0]
    assert all("error" in r for r in records)          # rank 0 checks the paths; nobody trains
