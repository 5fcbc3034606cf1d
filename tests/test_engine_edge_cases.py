"""Edge cases of the engine (issue 14): dtype promotion, empty tensors, clear errors, and
optimiser checkpoints that resume bit for bit. Every expectation is written out from PyTorch's
documented rules, so this runs without torch; where torch is installed the same tables are
also checked against it."""
import copy
import gzip
import struct
from types import SimpleNamespace

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor, data, nn, optim

# ---------------------------------------------------------------- 1. dtype promotion

DTYPES = {"bool": np.bool_, "u8": np.uint8, "i8": np.int8, "i32": np.int32, "i64": np.int64,
          "f32": np.float32, "f64": np.float64}
TORCH_NAMES = {"bool": "bool", "u8": "uint8", "i8": "int8", "i16": "int16", "i32": "int32",
               "i64": "int64", "f32": "float32", "f64": "float64"}


def make_operand(spec, as_tensor):
    """'f32' a 2x2 tensor, 'f64()' a 0-d tensor, a Python number itself."""
    if not isinstance(spec, str):
        return spec
    name = spec.rstrip("()")
    values = [[True, False], [False, True]] if name == "bool" else [[1, 2], [3, 4]]
    array = np.array(values if name == spec else values[0][0], dtype=DTYPES[name])
    return as_tensor(array)


ENGINE = SimpleNamespace(softmax=lambda x: F.softmax(x, axis=-1), log_softmax=lambda x: F.log_softmax(x, axis=-1))

# (op, operands, expected dtype, torch supports it). rows of the torch.result_type rule
PROMOTION = [
    (lambda L, a, b: a + b, ("f32", "f64"), "f64", True),
    (lambda L, a, b: a + b, ("i32", "i64"), "i64", True),
    (lambda L, a, b: a + b, ("i64", "f32"), "f32", True),      # NumPy would say float64
    (lambda L, a, b: a * b, ("i32", "f64"), "f64", True),
    (lambda L, a, b: a + b, ("u8", "i8"), "i16", True),
    (lambda L, a, b: a + b, ("bool", 1), "i64", True),
    (lambda L, a, b: a + b, ("bool", "bool"), "bool", True),
    (lambda L, a, b: a * b, ("bool", "i32"), "i32", True),
    (lambda L, a, b: a * b, ("bool", 0.5), "f32", True),
    (lambda L, a, b: a + b, ("i64", 0.5), "f32", True),
    (lambda L, a, b: a + b, ("i64", 1), "i64", True),
    (lambda L, a, b: a + b, ("i32", 1), "i32", True),
    (lambda L, a, b: a + b, ("f32", 1), "f32", True),
    (lambda L, a, b: a + b, ("f32", 0.5), "f32", True),
    (lambda L, a, b: a * b, ("f64", 0.5), "f64", True),
    (lambda L, a, b: a - b, ("i64", "f32"), "f32", True),
    (lambda L, a, b: a - b, (1, "i32"), "i32", True),
    (lambda L, a, b: a - b, (2.5, "i64"), "f32", True),
    (lambda L, a, b: a + b, ("i32", "i64()"), "i32", True),    # a 0-d tensor is a lower tier
    (lambda L, a, b: a + b, ("f32", "f64()"), "f32", True),
    (lambda L, a, b: a + b, ("i64", "f64()"), "f64", True),    # ... unless its category is higher
    (lambda L, a, b: a + b, ("i32()", 5), "i32", True),
    (lambda L, a, b: a / b, ("i64", "i64"), "f32", True),      # true division
    (lambda L, a, b: a / b, ("i32", 2), "f32", True),
    (lambda L, a, b: a / b, ("bool", "bool"), "f32", True),
    (lambda L, a, b: a / b, (2, "i64"), "f32", True),
    (lambda L, a, b: a / b, ("f64", 2), "f64", True),
    (lambda L, a, b: a / b, ("f32", "i64"), "f32", True),
    (lambda L, a, b: a @ b, ("i64", "f32"), "f32", False),     # torch refuses mixed matmul
    (lambda L, a: a.sigmoid(), ("i64",), "f32", True),
    (lambda L, a: a.tanh(), ("i32",), "f32", True),
    (lambda L, a: a.exp(), ("bool",), "f32", True),
    (lambda L, a: a.log(), ("i64",), "f32", True),
    (lambda L, a: a.exp(), ("f64",), "f64", True),
    (lambda L, a: a.relu(), ("i64",), "i64", True),
    (lambda L, a: a ** 2, ("i64",), "i64", True),
    (lambda L, a: a ** 0.5, ("i64",), "f32", True),
    (lambda L, a: a.sum(), ("bool",), "i64", True),
    (lambda L, a: a.sum(), ("u8",), "i64", True),
    (lambda L, a: a.sum(), ("i32",), "i64", True),
    (lambda L, a: L.softmax(a), ("i64",), "f32", False),       # torch has no integer softmax
    (lambda L, a: L.log_softmax(a), ("bool",), "f32", False),
    (lambda L, a: L.softmax(a), ("f64",), "f64", True),
]
IDS = [f"{i}-{'-'.join(map(str, ops))}" for i, (_, ops, _, _) in enumerate(PROMOTION)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # bool / bool divides by False
@pytest.mark.parametrize("op, operands, expected, _", PROMOTION, ids=IDS)
def test_result_dtype_follows_torch_rule(op, operands, expected, _):
    out = op(ENGINE, *[make_operand(s, Tensor) for s in operands])
    assert isinstance(out, Tensor) and out.dtype == np.dtype(DTYPES.get(expected, np.int16))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("op, operands, expected, in_torch", PROMOTION, ids=IDS)
def test_result_dtype_table_agrees_with_torch(op, operands, expected, in_torch):
    torch = pytest.importorskip("torch")
    if not in_torch:
        pytest.skip("an engine extension: torch raises for these dtypes")
    lib = SimpleNamespace(softmax=lambda x: torch.softmax(x, -1), log_softmax=lambda x: torch.log_softmax(x, -1))
    out = op(lib, *[make_operand(s, torch.from_numpy) for s in operands])
    assert out.dtype == getattr(torch, TORCH_NAMES[expected])


DIVISIONS = [(lambda x: x / 0, [np.inf, -np.inf, np.nan]), (lambda x: x / 0.0, [np.inf, -np.inf, np.nan]),
             (lambda x: x / -0.0, [-np.inf, np.inf, np.nan]),
             (lambda x: x / Tensor(np.float32(0)), [np.inf, -np.inf, np.nan]),
             (lambda x: 1 / (x - x), [np.inf] * 3)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's 0 * inf warning; the nan is meant
@pytest.mark.parametrize("dtype", ["f32", "i64"])
@pytest.mark.parametrize("fn, expected", DIVISIONS)
def test_division_by_zero_gives_inf_and_nan(fn, expected, dtype):
    out = fn(Tensor(np.array([1, -1, 0], dtype=DTYPES[dtype])))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.data, np.array(expected, dtype=np.float32))


def test_division_by_zero_agrees_with_torch():
    torch = pytest.importorskip("torch")
    for fn, expected in DIVISIONS[:3]:
        np.testing.assert_array_equal(fn(torch.tensor([1.0, -1.0, 0.0])).numpy(), expected)


def test_gradients_flow_only_to_floating_operands_across_promotions():
    w = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    ints, wide = Tensor(np.array([3, 4])), Tensor(np.array([0.5, 0.25]))  # int64, float64
    out = (w * ints + w * wide + w / ints).sum()
    assert out.dtype == np.float64 and out.requires_grad and not ints.requires_grad
    out.backward()
    assert w.grad.dtype == np.float32 and ints.grad is None
    np.testing.assert_allclose(w.grad, [3 + 0.5 + 1 / 3, 4 + 0.25 + 1 / 4], rtol=1e-6)
    assert not (ints.sigmoid() + ints).requires_grad
    with pytest.raises(RuntimeError, match="floating-point"):
        Tensor(np.array([1, 2]), requires_grad=True)


# ---------------------------------------------------------------- 2. empty tensors

def empty(*shape):
    return Tensor(np.zeros(shape, dtype=np.float32), requires_grad=True)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_mean_of_nothing_is_nan_and_sum_is_zero():
    assert np.isnan(empty(0).mean().item()) and empty(0, 3).sum().item() == 0
    np.testing.assert_array_equal(empty(3, 0).mean(axis=1).data, [np.nan] * 3)
    assert empty(0, 3).mean(axis=0).shape == (3,) and np.isnan(empty(0, 3).mean(axis=0).data).all()
    assert empty(0, 3).mean(axis=1).shape == (0,)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cross_entropy_of_an_empty_batch_is_nan_and_differentiable():
    logits = empty(0, 3)
    loss = F.cross_entropy(logits, np.zeros(0, dtype=np.int64))
    assert np.isnan(loss.item())
    loss.backward()
    assert logits.grad.shape == (0, 3)


@pytest.mark.parametrize("shape, axis", [((3, 0), 1), ((0, 3), 1), ((0, 3), 0)])
@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_softmax_over_an_empty_axis_is_empty(fn, shape, axis):
    x = empty(*shape)
    out = fn(x, axis=axis)
    assert out.shape == shape
    out.sum().backward()
    assert x.grad.shape == shape


def test_max_and_argmax_of_zero_rows_and_errors_over_nothing():
    assert empty(0, 3).max(axis=1).shape == (0,) and empty(0, 3).argmax(axis=1).shape == (0,)
    for call in (lambda: empty(0, 3).max(), lambda: empty(3, 0).max(axis=1),
                 lambda: empty(3, 0).argmax(axis=1), lambda: empty(0).argmax()):
        with pytest.raises(ValueError, match=r"(max|argmax): .*shape \((0, 3|3, 0|0,)\)"):
            call()


def test_indexing_with_an_empty_list_and_its_backward():
    x = Tensor(np.ones((3, 2), dtype=np.float32), requires_grad=True)
    picked = x[[]]
    assert picked.shape == (0, 2) and picked.dtype == np.float32
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((3, 2)))


def test_empty_tensor_shapes_agree_with_torch():
    torch = pytest.importorskip("torch")
    assert torch.empty(0, 3).max(1).values.shape == empty(0, 3).max(axis=1).shape
    assert torch.empty(3, 2)[[]].shape == empty(3, 2)[[]].shape
    assert torch.softmax(torch.empty(3, 0), 1).shape == F.softmax(empty(3, 0), axis=1).shape
    assert torch.isnan(torch.nn.functional.cross_entropy(torch.empty(0, 3), torch.empty(0, dtype=torch.long)))
    with pytest.raises(Exception):
        torch.empty(3, 0).max(1)


# ---------------------------------------------------------------- 3. clear errors: data files

def idx_bytes(dims, body=b"", code=0x08):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def test_load_mnist_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    X, y = np.zeros((2, 28, 28), np.uint8), np.array([3, 4], np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=X, y_train=y, x_test=X, y_test=y)
    X_train, y_train, _, _ = data.load_mnist("~/mnist.npz")
    assert X_train.shape == (2, 784) and list(y_train) == [3, 4]
    (tmp_path / "idx").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "idx")):
        data.load_mnist("~/idx")  # found the directory, then the missing files under it


def flip_byte(raw, i):
    return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]


@pytest.mark.parametrize("name, content, match", [
    # byte 10 starts the deflate body: flipped, zlib raises zlib.error (neither OSError nor EOFError)
    ("body.gz", flip_byte(gzip.compress(idx_bytes([20], bytes(range(20))) * 20, mtime=0), 10), "corrupt gzip"),
    ("cut.gz", gzip.compress(idx_bytes([2], b"\x01\x02"), mtime=0)[:12], "corrupt gzip"),
    # 65536^4 = 2^64 wraps to 0 in int64: the empty body would have passed the size check
    ("wraps", idx_bytes([65536] * 4), r"truncated: 20 bytes, shape \(65536, 65536, 65536, 65536\)"),
    ("huge", idx_bytes([2 ** 32 - 1] * 3, b"\x00" * 8), r"truncated: 24 bytes, shape \(4294967295,"),
    ("short", idx_bytes([2, 3], b"\x00" * 5), r"truncated: 17 bytes, shape \(2, 3\) needs 18"),
], ids=["gzip-body", "gzip-cut", "dims-wrap-int64", "dims-huge", "dims-vs-size"])
def test_corrupt_idx_files_raise_value_error_naming_the_file(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        data.mnist.read_idx(tmp_path / name)
    assert str(tmp_path / name) in str(info.value)


def test_corrupt_npz_files_raise_value_error_naming_the_file(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x_train=np.arange(1000), y_train=np.zeros(2), x_test=np.zeros(2), y_test=np.zeros(2))
    raw = good.read_bytes()
    corrupt = {"truncated.npz": raw[: len(raw) // 2], "garbage.npz": b"not a zip file at all",
               "flipped.npz": raw[:60] + bytes(b ^ 0xFF for b in raw[60:200]) + raw[200:]}
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    for name, content in corrupt.items():
        (tmp_path / name).write_bytes(content)
    for name in [*corrupt, "array.npz"]:
        with pytest.raises(ValueError, match="corrupt or not an .npz") as info:
            data.load_mnist(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and info.value.__cause__ is not None


# ---------------------------------------------------------------- 3. clear errors: layers, state dicts

def test_linear_rejects_a_0d_tensor_and_a_numpy_array_by_name():
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"Linear: .*in_features=3.*shape \(\)"):
        layer(Tensor(np.float32(1.0)))
    with pytest.raises(TypeError, match=r"Linear: expected a Tensor .*ndarray of shape \(4, 3\)"):
        layer(np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="Conv2d: expected a Tensor"):
        nn.Conv2d(1, 1, 3)(np.zeros((1, 1, 5, 5), np.float32))


def mlp(seed=0):
    engine.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def test_module_load_state_dict_takes_lists_and_names_bad_values():
    model = mlp()
    state = {k: v.tolist() for k, v in mlp(1).state_dict().items()}
    model.load_state_dict(state)
    np.testing.assert_array_equal(model.state_dict()["2.bias"], np.array(state["2.bias"], np.float32))
    before = model.state_dict()
    for value, error, match in [([1.0, 2.0], ValueError, r"2.bias has shape \(3,\) .* but \(2,\)"),
                                (None, TypeError, "2.bias: expected numbers"),
                                ("abc", TypeError, "2.bias: expected numbers"),
                                ([[1.0], [1.0, 2.0]], (TypeError, ValueError), "2.bias")]:
        bad = dict(before, **{"0.bias": np.zeros(5), "2.bias": value})
        with pytest.raises(error, match=match):
            model.load_state_dict(bad)
        for name, array in before.items():  # checked before anything was copied
            np.testing.assert_array_equal(model.state_dict()[name], array)
    with pytest.raises(TypeError, match="expected a dict"):
        model.load_state_dict([("0.bias", np.zeros(5))])


# ---------------------------------------------------------------- 3. optimiser state dicts

OPTIMISERS = {"sgd_momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
              "sgd_nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
              "adam": lambda ps: optim.Adam(ps, lr=0.01, betas=(0.8, 0.9), weight_decay=0.01)}
X = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
Y = np.arange(8) % 3


def train(model, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(Tensor(X)), Y).backward()
        opt.step()


@pytest.mark.parametrize("make", OPTIMISERS.values(), ids=OPTIMISERS.keys())
def test_checkpoint_and_resume_is_bit_identical_to_uninterrupted_training(make):
    model, reference = mlp(), mlp()
    opt, ref_opt = make(model.parameters()), make(reference.parameters())
    train(reference, ref_opt, 6)
    train(model, opt, 3)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    resumed = mlp(seed=7)  # other weights: everything must come from the checkpoint
    resumed_opt = make(resumed.parameters())
    resumed.load_state_dict(saved[0])
    resumed_opt.load_state_dict(saved[1])
    train(resumed, resumed_opt, 3)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(b, a, err_msg=name)
    for s, r in zip(resumed_opt.state_dict()["state"], ref_opt.state_dict()["state"]):
        assert s.keys() == r.keys() and s.get("step") == r.get("step")
        for key in s:
            np.testing.assert_array_equal(s[key], r[key])
    if "step" in resumed_opt.state[0]:
        assert resumed_opt.state[0]["step"] == 6


def bad_state(change):
    model = mlp()
    opt = optim.Adam(model.parameters())
    train(model, opt, 1)
    state = opt.state_dict()
    change(state)
    return opt, state


@pytest.mark.parametrize("change, match", [
    (lambda s: s["state"][1].__setitem__("exp_avg", np.zeros((5, 5))),
     r"parameter 1: exp_avg has shape \(5, 5\), the parameter has shape \(5,\)"),
    (lambda s: s["state"][0].__setitem__("exp_avg_sq", [0.0]), r"parameter 0: exp_avg_sq has list"),
    (lambda s: s["state"][2].pop("step"), r"state of parameter 2 has \['exp_avg', 'exp_avg_sq'\]"),
    (lambda s: s["state"][3].__setitem__("step", 1.5), "parameter 3: step must be an int"),
    (lambda s: s["state"].pop(), "state for 3 parameters, optimiser has 4"),
    (lambda s: s["defaults"].pop("eps"), "hyperparameters"),
    (lambda s: s.pop("defaults"), "expected a dict with keys"),
])
def test_optimizer_load_state_dict_rejects_bad_state_at_load_time(change, match):
    opt, state = bad_state(change)
    before = copy.deepcopy(opt.state)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert opt.state[0]["step"] == before[0]["step"]  # unchanged: checked before loading


def test_sgd_load_state_dict_rejects_a_momentum_buffer_of_the_wrong_shape():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, 1)
    state = opt.state_dict()
    state["state"][0]["momentum_buffer"] = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: parameter 0: momentum_buffer has shape \(4, 5\), "
                                         r"the parameter has shape \(5, 4\)"):
        opt.load_state_dict(state)
