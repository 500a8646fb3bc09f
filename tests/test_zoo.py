import pytest

from probelib.encoders import REGISTRY
from probelib.zoo import (DEMO_MODELS, PAPER1_MODELS, PAPER2_MODELS, build_encoder, demo_ladder,
                          parse_model)


def test_parse_model_grammar():
    assert parse_model("mobilenet_v2") == ("mobilenet_v2", False, 0.0)
    assert parse_model("alexnet:untrained") == ("alexnet", True, 0.0)
    assert parse_model("resnet50_l2_eps0.01+smooth0.25") == ("resnet50_l2_eps0.01", False, 0.25)
    with pytest.raises(ValueError, match="unknown model"):
        parse_model("resnet51")


def test_panels_name_registered_models():
    for spec in DEMO_MODELS + PAPER1_MODELS + PAPER2_MODELS + demo_ladder():
        assert parse_model(spec)[0] in REGISTRY
    assert len(PAPER1_MODELS) == 8 and len(PAPER2_MODELS) == 14
    assert demo_ladder("efficientnet_lite0", (0, 0.1))[1] == "efficientnet_lite0+smooth0.1"


def test_build_encoder_names_and_smoothing():
    enc = build_encoder("alexnet:untrained+smooth0.1", n_samples=2)
    assert enc.name == "alexnet:untrained+smooth0.1" and enc.sigma == 0.1 and enc.n_samples == 2
    assert not enc.trained
