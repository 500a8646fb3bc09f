import numpy as np
import pytest

from probelib.data.dataset import Dataset, make_split
from probelib.metrics import pearson_r
from probelib.fitting import fit_panel
from probelib.probes.cached import panel_fgsm
from probelib.tables import sensitivity_table


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    n = 14
    return Dataset(stimuli=rng.random((n, 3, 64, 64)).astype(np.float32),
                   responses={"A": rng.normal(size=(n, 2)).astype(np.float32),
                              "B": rng.normal(size=(n, 1)).astype(np.float32)},
                   image_ids=np.arange(n), split=make_split(n, 9, 0))


@pytest.mark.parametrize("kind", ["ols", "cnn"])
def test_fit_panel_predictions_are_the_models_predictions(toy, kind):
    opts = {"weight_decays": [1e-2], "epochs": 20} if kind == "cnn" else {}
    fit = fit_panel(toy, ["alexnet:untrained"], kind=kind, progress=False, **opts)
    assert set(fit.models) == {("alexnet:untrained", "A"), ("alexnet:untrained", "B")}
    test = toy.split["test"]
    for key, model in fit.models.items():
        pred = model.predict(toy.stimuli[test])
        np.testing.assert_allclose(fit.predictions[key], pred, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fit.predictivity[key], pearson_r(pred, toy.responses[key[1]][test]),
                                   atol=1e-5)
    assert len(fit.table()) == 3
    with pytest.raises(ValueError, match="unknown ROI"):
        fit_panel(toy, ["alexnet:untrained"], rois=["C"], progress=False)


def test_panel_fgsm_is_cached(toy, monkeypatch, tmp_path):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    fit = fit_panel(toy, ["alexnet:untrained"], kind="ols", progress=False)
    a = panel_fgsm(fit, "alexnet:untrained", "A", eps=[1 / 255, 2 / 255])
    import probelib.probes as probes
    monkeypatch.setattr(probes, "fgsm", lambda *a, **k: pytest.fail("not served from the cache"))
    b = panel_fgsm(fit, "alexnet:untrained", "A", eps=[1 / 255, 2 / 255])
    np.testing.assert_array_equal(a.sensitivity, b.sensitivity)
    # where it runs and whether it shows progress do not change the result: still cached
    c = panel_fgsm(fit, "alexnet:untrained", "A", eps=[1 / 255, 2 / 255], device="cpu",
                     progress=True)
    np.testing.assert_array_equal(a.sensitivity, c.sensitivity)
    table = sensitivity_table({("alexnet:untrained", "A"): a})
    assert len(table) == 2 * len(toy.split["test"]) * 2


def test_panel_probe_key_holds_the_fit_seed(toy, monkeypatch, tmp_path):
    """Readouts fitted with another seed (e.g. the folds of a lasso CV) are other models."""
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    fits = [fit_panel(toy, ["alexnet:untrained"], kind="ols", seed=s, progress=False) for s in (0, 1)]
    assert fits[0].key("alexnet:untrained", "A") != fits[1].key("alexnet:untrained", "A")
    panel_fgsm(fits[0], "alexnet:untrained", "A", eps=[1 / 255])
    import probelib.probes as probes
    calls = []
    real = probes.fgsm
    monkeypatch.setattr(probes, "fgsm", lambda *a, **k: calls.append(1) or real(*a, **k))
    panel_fgsm(fits[1], "alexnet:untrained", "A", eps=[1 / 255])
    assert calls == [1]


def test_fit_panel_trains_net_readouts_on_its_device(toy, monkeypatch):
    import probelib.fitting as pl
    seen = []
    real = pl.fit_readout
    monkeypatch.setattr(pl, "fit_readout", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    fit = fit_panel(toy, ["alexnet:untrained"], rois=["B"], kind="mlp", device="cpu", progress=False,
                    weight_decays=[1e-2], epochs=2, hidden=4)
    assert seen and all(kw["device"] == "cpu" for kw in seen)
    assert "device" not in fit.options  # not part of the cache key
