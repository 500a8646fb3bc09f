"""No silent wrong results: cache keys by content, eval mode, batching-independent random draws,
clear errors for degenerate inputs, vetted cache entries. Each test name says its class."""
from __future__ import annotations

import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from torch import nn

from probelib import probes
from probelib.cache import cache_dir
from probelib.encoders import Encoder, load_encoder
from probelib.model import EncodingModel, extract_features, fit_encoding_model
from probelib.readouts import fit_readout


def _net(seed: int, name: str | None = None) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    if name is not None:
        net.name = name
    return net


def _images(n: int = 6, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _direct(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net.eval()(x).numpy()


# ------------------------------------------------------------------------ class 1: cache keys

def test_cache_keys_two_plain_modules_get_their_own_features():
    x = _images()
    a, b = _net(0), _net(1)
    fa, fb = extract_features(a, x), extract_features(b, x)
    np.testing.assert_allclose(fa, _direct(a, x), rtol=1e-6)
    np.testing.assert_allclose(fb, _direct(b, x), rtol=1e-6)
    assert not np.allclose(fa, fb)


def test_cache_keys_same_name_is_not_the_same_model():
    x = _images()
    a, b = _net(0, name="net"), _net(1, name="net")
    extract_features(a, x)
    np.testing.assert_allclose(extract_features(b, x), _direct(b, x), rtol=1e-6)
    # and the readout is fitted on b's features, not a's
    y = np.random.default_rng(0).normal(size=(6, 2))
    model = fit_encoding_model(b, x, y, kind="ols")
    ref = fit_readout("ols", _direct(b, x), y)
    torch.testing.assert_close(model.readout.weight, ref.weight)


def test_cache_keys_parameters_edited_in_place():
    x = _images()
    a = _net(0)
    before = extract_features(a, x)
    with torch.no_grad():
        a[0].weight.data.mul_(2.0)  # .data: no version bump, so only the values tell
    after = extract_features(a, x)
    np.testing.assert_allclose(after, _direct(a, x), rtol=1e-6)
    assert not np.allclose(before, after)


def test_cache_keys_weights_file_overwritten_at_the_same_path(tmp_path):
    path = tmp_path / "weights.pth"
    x = _images(4, 32)
    first = load_encoder("squeezenet1_1", weights=None, seed=0)
    torch.save(first.net.state_dict(), path)
    f1 = extract_features(load_encoder("squeezenet1_1", weights=path), x)
    second = load_encoder("squeezenet1_1", weights=None, seed=1)
    torch.save(second.net.state_dict(), path)  # same path, other weights
    enc = load_encoder("squeezenet1_1", weights=path)
    f2 = extract_features(enc, x)
    with torch.no_grad():
        np.testing.assert_allclose(f2, second(x).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(f1, f2)


def test_cache_keys_settings_enter_the_key():
    from probelib.cache import module_key
    x = _images(3, 32)
    enc = load_encoder("squeezenet1_1", weights=None, layer="features.3")
    other = load_encoder("squeezenet1_1", weights=None, layer="features.5")
    assert module_key(enc) != module_key(other)
    assert module_key(enc) == module_key(load_encoder("squeezenet1_1", weights=None, layer="features.3"))
    assert extract_features(enc, x).shape != extract_features(other, x).shape


# ------------------------------------------------------------------------ class 2: eval mode

class _Noisy(nn.Module):
    """Batch norm and dropout: train mode changes outputs and running statistics."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.drop(self.bn(self.conv(x)).mean((2, 3))))


def test_mode_features_and_predictions_are_eval_mode_and_the_mode_is_restored():
    x = _images()
    net = _Noisy().train()
    net.head.weight.requires_grad_(False)
    stats = net.bn.running_mean.clone()
    feats = extract_features(net, x)
    np.testing.assert_allclose(feats, _direct(_Noisy(), x), rtol=1e-5)
    assert net.training and net.bn.training and net.drop.training  # the caller's mode is back
    assert net.conv.weight.requires_grad and not net.head.weight.requires_grad
    torch.testing.assert_close(net.bn.running_mean, stats)  # statistics not overwritten
    model = EncodingModel(net, fit_readout("ols", feats, np.random.default_rng(0).normal(size=(6, 3))))
    assert net.training
    pred = model.predict(x)
    np.testing.assert_allclose(pred, model.readout(torch.from_numpy(feats)).numpy(), rtol=1e-5)
    assert net.training
    res = probes.fgsm(model, x, eps=2 / 255)
    assert net.training and np.all(np.isfinite(res.sensitivity))


def test_mode_encoder_leaves_the_wrapped_network_as_it_was():
    import torchvision
    net = torchvision.models.squeezenet1_1(weights=None).train()
    flags = [p.requires_grad for p in net.parameters()]
    enc = Encoder(net, "mine", "features.5", (0.5,) * 3, (0.5,) * 3, "user module")
    x = _images(2, 64)
    with torch.no_grad():
        enc.eval()
        feats = enc(x)
        logits = net(x)  # the whole network still runs: no hook left behind
    assert logits.shape == (2, 1000) and feats.ndim == 2
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(not m._forward_hooks for m in net.modules())
    enc.train()
    assert extract_features(enc, x).shape == tuple(feats.shape)
    assert net.training


# ------------------------------------------------------------------ class 7: batching, seeds

def _same(a, b):
    """Equal up to float rounding (BLAS sums in another order for another batch size)."""
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _Linear(nn.Module):
    def __init__(self, v: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(v, 3 * 8 * 8, generator=g))

    def forward(self, x):
        return torch.tanh(x.flatten(1) @ self.w.T / 20)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_batching_pgd_random_starts_do_not_depend_on_batches_or_grouping(norm):
    x = _images(5, 8)
    m = _Linear()
    eps = 0.5 if norm == "l2" else 4 / 255
    kw = dict(eps=eps, norm=norm, steps=2, step_size=eps / 4, random_start=True, restarts=2, seed=1,
              direction="abs")
    ref = probes.pgd(m, x, batch_size=32, **kw)
    for batch in (1, 4):
        _same(probes.pgd(m, x, batch_size=batch, **kw).sensitivity, ref.sensitivity)
    alone = probes.pgd(m, x, units=[2], **kw)  # a unit probed alone
    _same(alone.sensitivity[..., 0], ref.sensitivity[..., 2])
    part = probes.pgd(m, x[3:], **kw)  # images split across calls (or machines)
    _same(part.sensitivity, ref.sensitivity[:, 3:])
    other = probes.pgd(m, x, seed=2, **{k: v for k, v in kw.items() if k != "seed"})
    assert not np.array_equal(other.sensitivity, ref.sensitivity)


def test_batching_fixed_effect_random_starts_do_not_depend_on_batches():
    x = _images(3, 8)
    m = _Linear()
    kw = dict(target_change=0.05, norm="l2", steps=2, random_start=True, seed=3, max_iter=4)
    a = probes.fixed_effect(m, x, batch_size=32, **kw)
    b = probes.fixed_effect(m, x, batch_size=2, **kw)
    _same(a.eps, b.eps)
    _same(a.change, b.change)
    c = probes.fixed_effect(m, x, units=[1], **kw)
    _same(c.eps[:, 0], a.eps[:, 1])
    _same(c.change[:, 0], a.change[:, 1])


@pytest.mark.parametrize("control", ["random_control", "shuffled_control"])
def test_batching_controls_do_not_depend_on_grouping(control):
    x = _images(4, 8)
    m = _Linear()
    probe = probes.fgsm(m, x, eps=[2 / 255, 4 / 255], store_perturbations=True)
    fn = getattr(probes, control)
    ref = fn(m, x, probe, seed=5)
    _same(fn(m, x, probe, seed=5, batch_size=1).sensitivity, ref.sensitivity)
    one = probes.fgsm(m, x, eps=[2 / 255, 4 / 255], units=[1], store_perturbations=True)
    _same(fn(m, x, one, seed=5).sensitivity[..., 0], ref.sensitivity[..., 1])
    part = probes.fgsm(m, x[1:], eps=[2 / 255, 4 / 255], store_perturbations=True)
    _same(fn(m, x[1:], part, seed=5).sensitivity, ref.sensitivity[:, 1:])


# ------------------------------------------------------------- class 8: clear errors

def test_degenerate_empty_batches_raise():
    m = _Linear()
    empty = torch.zeros(0, 3, 8, 8)
    for call in (lambda: probes.fgsm(m, empty, eps=0.01), lambda: probes.pgd(m, empty, eps=0.1),
                 lambda: extract_features(_net(0), empty),
                 lambda: EncodingModel(_net(0), fit_readout("ols", np.ones((3, 16)) + np.eye(3, 16),
                                                            np.eye(3))).predict(empty)):
        with pytest.raises(ValueError, match="empty"):
            call()


def test_degenerate_unsigned_unit_indices_work():
    m, x = _Linear(), _images(2, 8)
    ref = probes.fgsm(m, x, eps=0.01, units=[1, 2])
    for dtype in (np.uint8, np.uint16, np.uint64):
        got = probes.fgsm(m, x, eps=0.01, units=np.array([1, 2], dtype=dtype))
        np.testing.assert_array_equal(got.sensitivity, ref.sensitivity)
    with pytest.raises(ValueError, match="out of range"):
        probes.fgsm(m, x, eps=0.01, units=np.array([7], dtype=np.uint8))


@pytest.mark.parametrize("content", [b"", b"\x80\x02not a checkpoint at all" * 10, bytes(range(256)) * 4])
def test_degenerate_weights_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="broken.pth"):
        load_encoder("squeezenet1_1", weights=path)


def test_degenerate_empty_layer_name_is_an_error():
    with pytest.raises(ValueError, match="unknown layer '' .*valid layers: features"):
        load_encoder("squeezenet1_1", weights=None, layer="")


def test_degenerate_readout_fitted_on_other_features():
    x = _images(4, 12)
    readout = fit_readout("ols", np.random.default_rng(0).normal(size=(4, 10)), np.eye(4))
    model = EncodingModel(_net(0), readout)  # the network gives 16 features, the readout wants 10
    with pytest.raises(ValueError, match=r"fitted on 10 features per image; got .*\(16 per image\)"):
        model.predict(x)
    with pytest.raises(ValueError, match="fitted on 10 features"):
        probes.fgsm(model, x, eps=0.01)


# ------------------------------------------------------- class 9: vetted cache entries

def test_cache_entry_of_the_wrong_kind_is_recomputed():
    x = _images()
    net = _net(0)
    good = extract_features(net, x)
    outputs = list(Path(cache_dir()).rglob("output.pkl"))
    assert len(outputs) == 1
    for wrong in ("not features", np.zeros((2, 3), np.float32), good.astype(np.float64)):
        joblib.dump(wrong, outputs[0])  # a valid pickle, but not what the function returns
        with pytest.warns(UserWarning, match="recomputing"):
            np.testing.assert_array_equal(extract_features(net, x), good)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the entry was replaced: no warning the next time
            np.testing.assert_array_equal(extract_features(net, x), good)
