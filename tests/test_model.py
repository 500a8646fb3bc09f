import numpy as np
import torch

from probelib.encoders import load_encoder
from probelib.model import EncodingModel, extract_features, fit_encoding_model
from probelib.readouts import fit_readout


def test_encoding_model_end_to_end(rng):
    enc = load_encoder("mobilenet_v2", weights=None)
    images = torch.rand(24, 3, 32, 32)
    feats = extract_features(enc, images, batch_size=8)
    assert feats.shape[0] == 24
    Y = feats[:, :5] * 3 + rng.normal(size=(24, 5)).astype(np.float32) * 0.01
    model = fit_encoding_model(enc, images[:20], Y[:20], kind="ridge", alphas=[1e-3])
    pred = model.predict(images[20:], batch_size=2)
    assert pred.shape == (4, 5)
    with torch.no_grad():
        assert np.allclose(pred, model(images[20:]).numpy(), atol=1e-5)
    # differentiable end to end: gradient w.r.t. pixels exists and is finite
    x = images[:2].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().sum() > 0
    assert model.n_outputs == 5


def test_feature_cache_hits_and_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    enc = load_encoder("alexnet", weights=None)
    images = torch.rand(4, 3, 64, 64)
    a = extract_features(enc, images)
    calls = []
    orig = enc.forward
    enc.forward = lambda x: calls.append(1) or orig(x)
    b = extract_features(enc, images)
    assert np.array_equal(a, b) and not calls  # served from the cache
    c = extract_features(load_encoder("alexnet", weights=None, seed=5), images)
    assert not np.allclose(a, c)  # different weights, different key


def test_readout_modules_compose(rng):
    enc = load_encoder("alexnet", weights=None)
    images = torch.rand(10, 3, 64, 64)
    feats = extract_features(enc, images)
    readout = fit_readout("ols", feats, rng.normal(size=(10, 2)))
    m = EncodingModel(enc, readout)
    assert m.name == "alexnet/ols"


class _OnDevice(torch.nn.Module):
    """Stands in for a network on a GPU: a buffer on ``device`` (here "meta"); inputs elsewhere
    raise, as CUDA would. Returns zeros (N, width) on the CPU (meta tensors hold no values)."""

    def __init__(self, device="meta", width: int = 4):
        super().__init__()
        self.register_buffer("w", torch.zeros(1, device=device))
        self.width, self.name, self.seen = width, f"ondevice{id(self)}", []

    def forward(self, x):
        if x.device != self.w.device:
            raise RuntimeError(f"input on {x.device}, module on {self.w.device}")
        self.seen.append(x.device.type)
        return torch.zeros(x.shape[0], self.width)


def test_batched_and_predict_send_inputs_to_the_module_device():
    from probelib.model import batched
    images = torch.rand(5, 3, 8, 8)
    spy = _OnDevice()
    assert batched(spy, images, batch_size=2).shape == (5, 4)  # device=None: the module's
    assert spy.seen == ["meta"] * 3
    assert batched(lambda x: x.mean((2, 3)), images.numpy()).shape == (5, 3)  # plain callables


def test_fit_encoding_model_moves_the_encoder_before_extracting():
    spy = _OnDevice(device="cpu")
    model = fit_encoding_model(spy, torch.rand(6, 3, 8, 8), np.random.default_rng(0).normal(size=(6, 2)),
                               alphas=[1.0], device="meta")
    assert spy.seen and set(spy.seen) == {"meta"}  # features computed where the model lives
    assert model.readout.weight.device.type == "meta"
