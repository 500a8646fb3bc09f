import pytest
import torch

from probelib import adversarial_training as at
from probelib.cache import module_key
from probelib.encoders import REGISTRY
from probelib.zoo import (DEMO_BUDGETS, DEMO_MODELS, DEMO_ROBUST, PAPER1_MODELS, PAPER2_MODELS, ModelSpec,
                          build_encoder, demo_ladder, ladder_position, parse_model, parse_spec,
                          smoothing_ladder)


def test_parse_model_grammar():
    assert parse_model("mobilenet_v2") == ("mobilenet_v2", False, 0.0)
    assert parse_model("alexnet:untrained") == ("alexnet", True, 0.0)
    assert parse_model("resnet50_l2_eps0.01+smooth0.25") == ("resnet50_l2_eps0.01", False, 0.25)
    assert parse_model("mobilenet_v2+adv8+smooth0.1") == ("mobilenet_v2", False, 0.1)
    with pytest.raises(ValueError, match="unknown model"):
        parse_model("resnet51")


def test_parse_spec_adversarial_rungs():
    assert parse_spec("mobilenet_v2+adv8") == ModelSpec("mobilenet_v2", False, 8.0, None, 0.0)
    assert parse_spec("efficientnet_lite0+adv0.5@3") == ModelSpec("efficientnet_lite0", False, 0.5, 3, 0.0)
    assert parse_spec("mobilenet_v2+adv16@20+smooth0.25") == ModelSpec("mobilenet_v2", False, 16.0, 20, 0.25)
    assert parse_spec("alexnet:untrained") == ModelSpec("alexnet", True, 0.0, None, 0.0)


@pytest.mark.parametrize("spec, message", [
    ("mobilenet_v2+adv2/255", r"units of 1/255: write '\+adv2' for 2/255"),
    ("mobilenet_v2+advl2_3", "L-inf budget in units of 1/255"),
    ("mobilenet_v2+adv", "L-inf budget in units of 1/255"),
    ("mobilenet_v2+adv0", "plain name 'mobilenet_v2'"),
    ("mobilenet_v2+adv100", "0 < k <= 64"),
    ("mobilenet_v2+adv4@0", "positive integer"),
    ("alexnet:untrained+adv4", "untrained network cannot be adversarially"),
    ("mobilenet_v2+smooth0.1+adv4", r"write \+adv before \+smooth"),
    ("resnet51+adv4", "unknown model"),
    (None, "unknown model"),
])
def test_spec_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_panels_name_registered_models():
    for spec in DEMO_MODELS + PAPER1_MODELS + PAPER2_MODELS + demo_ladder() + DEMO_ROBUST + smoothing_ladder():
        assert parse_model(spec)[0] in REGISTRY
    assert len(PAPER1_MODELS) == 8 and len(PAPER2_MODELS) == 14


def test_ladders():
    ladder = demo_ladder("efficientnet_lite0")
    assert len(ladder) >= 4 and ladder[0] == "efficientnet_lite0" and DEMO_BUDGETS[0] == 0
    assert ladder[1:] == tuple(f"efficientnet_lite0+adv{b:g}" for b in DEMO_BUDGETS[1:])
    assert demo_ladder("mobilenet_v2", (0, 2), steps=3) == ("mobilenet_v2", "mobilenet_v2+adv2@3")
    assert smoothing_ladder("efficientnet_lite0", (0, 0.1))[1] == "efficientnet_lite0+smooth0.1"
    with pytest.raises(TypeError, match="smoothing_ladder"):
        demo_ladder("mobilenet_v2", sigmas=(0, 0.1))
    with pytest.raises(ValueError, match="smoothing_ladder"):
        demo_ladder("mobilenet_v2", (0.0, 0.05, 0.1))  # smoothing sigmas passed as budgets
    assert [ladder_position(s)[:2] for s in demo_ladder("mobilenet_v2", (0, 4, 8))] == [
        ("mobilenet_v2", 0.0), ("mobilenet_v2", 4.0), ("mobilenet_v2", 8.0)]
    assert ladder_position("mobilenet_v2+adv4@3")[0] == "mobilenet_v2@3"
    assert ladder_position("mobilenet_v2+smooth0.25") == ("mobilenet_v2+smooth", 0.25, "smoothing sigma")
    assert ladder_position("resnet50_l2_eps3") == ("resnet50_l2", 3.0, "adversarial training eps (L2)")
    with pytest.raises(ValueError, match="not on one ladder"):
        ladder_position("mobilenet_v2+adv4+smooth0.1")


def test_build_encoder_names_and_smoothing():
    enc = build_encoder("alexnet:untrained+smooth0.1", n_samples=2)
    assert enc.name == "alexnet:untrained+smooth0.1" and enc.sigma == 0.1 and enc.n_samples == 2
    assert not enc.trained


def test_build_encoder_adversarial_rung(monkeypatch):
    """A tiny rung (2 steps per stage) trained on given photographs; cached; an Encoder like the plain one."""
    from probelib.data.demo import load_demo_stimuli
    photos = load_demo_stimuli(16)[0][:8]
    calls = []
    train = at._train
    monkeypatch.setattr(at, "_train", lambda *a, **k: calls.append(a[3]) or train(*a, **k))
    plain = build_encoder("mobilenet_v2", layer="features.4")
    rung = build_encoder("mobilenet_v2+adv8@2", layer="features.4", train_images=photos)
    assert len(calls) == 2  # the curriculum: 4/255, then 8/255
    assert rung.name == "mobilenet_v2+adv8@2" and rung.layer == "features.4" and rung.trained
    assert "adversarially fine-tuned" in rung.weights_source
    assert module_key(rung) != module_key(plain)
    x = torch.as_tensor(photos[:2])
    with torch.no_grad():
        assert rung(x).shape == plain(x).shape and not torch.equal(rung(x), plain(x))
    again = build_encoder("mobilenet_v2+adv8@2", layer="features.4", train_images=photos, spatial=True)
    assert len(calls) == 2 and again(x).ndim == 4  # read from the cache
    assert module_key(build_encoder("mobilenet_v2+adv4@2", layer="features.4", train_images=photos)) \
        not in (module_key(rung), module_key(plain))
    assert len(calls) == 2  # 4/255 was the curriculum's first stage
    smoothed = build_encoder("mobilenet_v2+adv8@2+smooth0.1", layer="features.4", train_images=photos,
                             n_samples=2)
    assert smoothed.name == "mobilenet_v2+adv8@2+smooth0.1" and len(calls) == 2


def test_networks_outside_the_zoo_are_named_with_their_layer():
    from probelib.zoo import check_model, split_network

    assert split_network("torchvision:resnet18@layer3") == ("torchvision:resnet18", "layer3")
    assert split_network("timm:convnext_atto@stages.2") == ("timm:convnext_atto", "stages.2")
    assert split_network("/lab/nets.py:build@block2") == ("/lab/nets.py:build", "block2")
    for zoo_spec in ("mobilenet_v2", "mobilenet_v2+adv8@4", "alexnet:untrained+smooth0.1"):
        assert split_network(zoo_spec) is None and check_model(zoo_spec) == zoo_spec
    assert split_network("torchvision:resnet18@") is None
    with pytest.raises(ValueError, match="needs its layer"):
        check_model("timm:resnet18")
    with pytest.raises(ValueError, match="unknown model 'mobilenet_v3'.*'<model>@<layer>'"):
        check_model("mobilenet_v3")


def test_model_panels_are_the_chapters_and_other_datasets_are_refused():
    from probelib.zoo import DEMO_MODELS, DEMO_PANEL2, PAPER1_MODELS, PAPER2_MODELS, model_panel

    assert [model_panel(d, paper=p) for d in ("demo", "nsd") for p in (1, 2)] == [
        DEMO_MODELS, DEMO_PANEL2, PAPER1_MODELS, PAPER2_MODELS]
    assert model_panel() == DEMO_MODELS
    for bad in ("NSD", "nds", "imagenet"):
        with pytest.raises(ValueError, match=f"^unknown dataset '{bad}'; valid: 'demo', 'nsd'"):
            model_panel(bad)
    with pytest.raises(ValueError, match=r"^paper must be 1 \(2024\) or 2 \(2025\); got 3$"):
        model_panel("nsd", paper=3)
