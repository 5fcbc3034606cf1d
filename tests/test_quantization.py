"""Tests of engine/compress: observers, int8 round trips, the int8 kernel, PTQ, QAT (MATH A7).

Expected values are by hand or plain NumPy. Conventions under test: symmetric s = max|x| / 127,
z = 0; affine s = (max - min) / 255, z = round(-min / s) - 128 (int8), range widened to hold 0.
"""
import os

import numpy as np
import pytest

from engine import Tensor, functional as F, manual_seed, models, nn, optim
from engine.autograd import no_grad
from engine.compress.int8 import int8_matmul, requantize, time_against_float32
from engine.compress.qat import QATLinear, convert, fake_quantize, prepare_qat
from engine.compress.quantization import (MinMaxObserver, PercentileObserver, QuantizedLinear,
                                          dequantize, load_quantized, model_bytes, quantize,
                                          quantize_model, save_quantized)
from engine.data import load_mnist

ROUND_TRIP = 0.5 + 1e-5  # |dequantize(quantize(x)) - x| <= s/2, plus float32 rounding of the result


def test_observer_qparams_by_hand():
    x = np.array([[-1.0, 0.5, 2.0], [0.2, -0.4, 0.1]])
    s, z = MinMaxObserver(symmetric=True).observe(x).qparams()
    assert np.isclose(s, 2.0 / 127) and z == 0
    s, z = MinMaxObserver(symmetric=False).observe(x).qparams()       # [-1, 2] -> 3 / 255
    assert np.isclose(s, 3.0 / 255) and z == round(1.0 / (3.0 / 255)) - 128 == -43
    s, z = MinMaxObserver(symmetric=True, per_channel=True, axis=0).observe(x).qparams()
    assert np.allclose(s, [2.0 / 127, 0.4 / 127]) and (z == 0).all()
    s, z = MinMaxObserver(symmetric=False, per_channel=True, axis=1).observe(x).qparams()
    assert np.allclose(s, [1.2 / 255, 0.9 / 255, 2.0 / 255])          # each column holds 0
    assert list(z) == [round(1 / (1.2 / 255)) - 128, round(0.4 / (0.9 / 255)) - 128, -128]
    obs = MinMaxObserver(symmetric=False).observe(np.array([1.0, 3.0])).observe(np.array([-2.0]))
    assert (obs.min, obs.max) == (-2.0, 3.0)                          # accumulated over batches
    ema = MinMaxObserver(averaging_constant=0.5).observe(np.array([-1.0, 1.0])).observe(np.array([3.0]))
    assert (ema.min, ema.max) == (-1.0 * 0.5 + 3.0 * 0.5, 2.0)


def test_percentile_observer_ignores_an_outlier():
    x = np.concatenate([np.linspace(-1, 1, 10_000), [100.0]])
    s_minmax, _ = MinMaxObserver().observe(x).qparams()
    s_pct, _ = PercentileObserver(percentile=99.0).observe(x).qparams()
    assert np.isclose(s_minmax, 100 / 127) and np.isclose(s_pct, np.percentile(np.abs(x), 99) / 127)
    two = PercentileObserver(percentile=50.0).observe(np.array([1.0, 3.0])).observe(np.array([-5.0, 5.0]))
    assert np.isclose(two.max, (2.0 + 5.0) / 2)                        # mean of the batches' medians


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("per_channel", [False, True])
def test_round_trip_error_is_at_most_half_a_step(symmetric, per_channel):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 50)) * rng.uniform(0.01, 5, (16, 1)) + (0 if symmetric else 1.5))
    x = x.astype(np.float32)
    axis = 0 if per_channel else None
    s, z = MinMaxObserver(symmetric, per_channel, axis=0).observe(x).qparams()
    q = quantize(x, s, z, axis=axis)
    assert q.dtype == np.int8 and q.min() >= -128 and q.max() <= 127
    err = np.abs(dequantize(q, s, z, axis=axis) - x)
    step = s[:, None] if per_channel else s
    assert (err <= step * ROUND_TRIP).all()
    if symmetric:
        assert np.abs(q).max() == 127                                  # -128 unused on calibrated data


def test_int8_matmul_is_exact_including_extremes():
    rng = np.random.default_rng(1)
    for n, k, m in [(1, 1, 1), (7, 300, 5), (64, 784, 33)]:
        a = rng.integers(-128, 128, (n, k), dtype=np.int8)
        b = rng.integers(-128, 128, (k, m), dtype=np.int8)
        a[0, :] = -128
        b[:, 0] = -128
        if m > 1:
            b[:, 1] = 127
        out = int8_matmul(a, b)
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, a.astype(np.int32) @ b.astype(np.int32))
    a = np.full((2, 4096), -128, np.int8)                              # 4096 * 2^14 = 2^26: no overflow
    assert (int8_matmul(a, a.T.copy()) == 4096 * 128 * 128).all()
    assert requantize(np.array([100, -100, 10_000]), 0.1, 3).tolist() == [13, -7, 127]
    with pytest.raises(TypeError):
        int8_matmul(a.astype(np.int16), a.T.copy())


def test_int8_speed_against_float32_blas():
    result = time_against_float32()                                     # printed; no timing assert
    assert result["int8"] > 0 and result["float32"] > 0


def test_quantized_linear_is_close_to_float_linear():
    rng = np.random.default_rng(2)
    layer = nn.Linear(784, 300)
    x = rng.uniform(-1, 1, (256, 784)).astype(np.float32)
    s, z = MinMaxObserver(symmetric=False).observe(x).qparams()
    with no_grad():
        want = layer(Tensor(x)).data
    got = QuantizedLinear.from_float(layer, s, z)(Tensor(x)).data
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    print(f"QuantizedLinear relative error {rel:.4f}")
    assert rel < 0.02                                                   # stated bound: 2 %


def _normalised_mnist():
    X, y, Xt, yt = load_mnist()
    return (X - 0.5) / 0.5, y, (Xt - 0.5) / 0.5, yt


def _accuracy(model, X, y):
    with no_grad():
        return float((model(Tensor(X)).data.argmax(axis=1) == y).mean())


@pytest.fixture(scope="module")
def trained_mlp():
    X, y, Xt, yt = _normalised_mnist()
    model = models.mlp((784, 300, 100, 10))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = np.random.default_rng(0).permutation(4000)
    for epoch in range(2):                                              # 2 epochs, 126 steps
        for i in range(0, 4000, 64):
            batch = order[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(Tensor(X[batch])), y[batch]).backward()
            opt.step()
    return model, (X, y, Xt, yt)


@pytest.mark.parametrize("observer", ["minmax", "percentile"])
def test_quantize_model_keeps_mnist_accuracy(trained_mlp, observer):
    model, (X, y, Xt, yt) = trained_mlp
    qmodel = quantize_model(model, [X[i:i + 256] for i in range(0, 1024, 256)], observer=observer)
    assert [type(m) for m in qmodel] == [QuantizedLinear, nn.ReLU] * 2 + [QuantizedLinear]
    float_acc, int8_acc = _accuracy(model, Xt, yt), _accuracy(qmodel, Xt, yt)
    print(f"{observer}: float32 accuracy {float_acc:.3f}, int8 accuracy {int8_acc:.3f}")
    assert float_acc > 0.75 and abs(float_acc - int8_acc) <= 0.02                # "a couple of points"


def test_saved_int8_file_is_about_4x_smaller(trained_mlp, tmp_path):
    model, (X, y, Xt, yt) = trained_mlp
    qmodel = quantize_model(model, [X[:256]])
    np.savez(tmp_path / "float.npz", **model.state_dict())
    save_quantized(qmodel, tmp_path / "int8.npz")
    ratio = os.path.getsize(tmp_path / "float.npz") / os.path.getsize(tmp_path / "int8.npz")
    print(f"file sizes: float32 / int8 = {ratio:.2f}; model_bytes ratio "
          f"{model_bytes(model) / model_bytes(qmodel):.2f}")
    assert ratio >= 3.5 and model_bytes(model) / model_bytes(qmodel) >= 3.5
    loaded = load_quantized(tmp_path / "int8.npz")
    with no_grad():
        np.testing.assert_array_equal(loaded(Tensor(Xt[:50])).data, qmodel(Tensor(Xt[:50])).data)


def test_save_load_keeps_float_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8, 3, bias=False))
    x = Tensor(np.random.default_rng(3).standard_normal((2, 1, 4, 4)).astype(np.float32))
    qmodel = quantize_model(model, [x])
    assert isinstance(qmodel[0], nn.Conv2d) and isinstance(qmodel[4], QuantizedLinear)
    path = "/tmp/_mpigrad_quantized_test.npz"
    save_quantized(qmodel, path)
    np.testing.assert_array_equal(load_quantized(path)(x).data, qmodel(x).data)
    os.remove(path)


def test_fake_quantize_straight_through_gradient_on_both_sides_of_the_clip():
    s, z = np.float32(0.1), np.int32(-28)       # representable: s (q - z), q in [-128, 127]: [-10, 15.5]
    x = np.array([-10.0 - 0.04, -10.0 - 0.06, 0.33, 15.5 + 0.04, 15.5 + 0.06], np.float32)
    t = Tensor(x, requires_grad=True)
    y = fake_quantize(t, s, z)
    np.testing.assert_allclose(y.data, [-10.0, -10.0, 0.3, 15.5, 15.5], atol=1e-6)
    y.backward(np.array([1, 2, 3, 4, 5], np.float32))
    # rounded value inside [-128, 127]: gradient passes unchanged; outside (clipped): 0
    assert t.grad.tolist() == [1.0, 0.0, 3.0, 4.0, 0.0]


def test_prepare_qat_trains_and_convert_matches_the_fake_quant_model(trained_mlp):
    _, (X, y, Xt, yt) = trained_mlp
    manual_seed(0)                               # the same run whatever ran before
    model = prepare_qat(models.mlp((784, 64, 10)))
    assert [type(m) for m in model] == [QATLinear, nn.ReLU, QATLinear]
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for i in range(0, 2048, 64):
        opt.zero_grad()
        loss = F.cross_entropy(model(Tensor(X[i:i + 64])), y[i:i + 64])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"QAT loss {np.mean(losses[:4]):.3f} -> {np.mean(losses[-4:]):.3f}")
    assert np.mean(losses[-4:]) < 0.6 * np.mean(losses[:4])
    model.eval()
    qmodel = convert(model)
    with no_grad():
        fake, real = model(Tensor(Xt)).data, qmodel(Tensor(Xt)).data
    # The same integers on both sides, but float32 rounding of the products can send a value
    # that sits on a rounding boundary of the hidden layer's input to the neighbouring step:
    # a few outputs then differ by about one step's effect. Nearly all agree to 1e-4.
    close = np.abs(real - fake) <= 1e-4 * np.abs(fake).max()
    assert close.mean() >= 0.99, close.mean()
    assert np.abs(real - fake).max() <= 0.01 * np.abs(fake).max()
    assert (real.argmax(axis=1) == fake.argmax(axis=1)).mean() >= 0.99
    print(f"QAT int8 accuracy {_accuracy(qmodel, Xt, yt):.3f}")
