"""The `probelib` command (click), run in-process with click's test runner.

The end-to-end runs use the embedded demo at 32 px with a handful of images; the tests of this
module share one cache directory (fresh for the module), so the demo is simulated once.
"""
import time

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from probelib.cli import main

MODEL_FILE = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x):
        return self.head(self.block2(self.block1(x)).mean((2, 3)))


def build():
    return Net()


def build_small():
    return Net(width=4)
'''
SMALL = ["--roi", "FFA", "--n-images", "2", "--budget", "4/255", "--steps", "1", "--image-size", "32"]


# one cache for this module's tests (conftest.py's shared_cache), not one per test
pytestmark = pytest.mark.usefixtures("shared_cache")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("usermodel") / "mymodel.py"
    path.write_text(MODEL_FILE)
    return path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.mark.parametrize("args", [["--help"], ["score", "--help"], ["models", "--help"], ["-h"]])
def test_help_everywhere(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if "score" in args:
        for option in ("--model", "--layer", "--weights", "--dataset", "--budget", "--norm", "--reference",
                       "--device", "--seed", "--out"):
            assert option in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("probelib ")


def test_models_lists_what_loads_offline():
    result = run("models")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert " ok " in lines["mobilenet_v2"] and "[layer features.14]" in lines["mobilenet_v2"]
    assert " missing " in lines["resnet50"] and "resnet50-0676ba61.pth" in lines["resnet50"]
    hub = run("models", "--hub", "torchvision", "--found")
    assert hub.exit_code == 0 and "torchvision:mobilenet_v2" in hub.output
    assert "torchvision:resnet18 " not in hub.output


def test_score_errors_are_clean(model_file, tmp_path):
    result = run("score", "--model", f"{model_file}:build", "--layer", "blok2", "--out", tmp_path)
    assert result.exit_code == 1
    assert "Error: unknown layer 'blok2'" in result.output and "did you mean 'block2'" in result.output
    result = run("score", "--model", "torchvision:resnet18", "--layer", "layer3", "--out", tmp_path)
    assert result.exit_code == 1 and "resnet18-f37072fd.pth" in result.output
    result = run("score", "--model", "timm:resnet18", "--budget", "-1", "--out", tmp_path)
    assert result.exit_code == 2 and "must be > 0" in result.output
    result = run("score", "--model", "timm:resnet18", "--layer", "layer3", "--dataset", "nsd", "--out", tmp_path)
    assert result.exit_code == 1 and "nsd_root" in result.output


def test_score_a_user_file_on_the_demo(model_file, tmp_path):
    """A model that is in no hub, its reference a second factory of the same file; the observer
    is the transfer target. A second run reads everything from the cache."""
    out = tmp_path / "results"
    args = ["score", "--model", f"{model_file}:build", "--layer", "block2", *SMALL,
            "--reference", f"{model_file}:build_small@block2", "--out", out, "--quiet"]
    t0 = time.perf_counter()
    result = run(*args)
    cold = time.perf_counter() - t0
    assert result.exit_code == 0, result.output
    for name in ("score.csv", "score.md", "curves.csv", "subspaces.csv", "report.html", "sensitivity.png",
                 "subspace.png", "predictivity.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "score.csv")
    assert list(table["model"]) == ["mymodel.py:build", "mymodel.py:build_small@block2"]
    assert table[["r", "pgd@4/255", "transfer:observer@4/255", "subspace:observer"]].notna().all().all()
    assert "<img" in (out / "report.html").read_text()
    t0 = time.perf_counter()
    again = run(*args[:-3], "--out", tmp_path / "again", "--quiet")
    assert again.exit_code == 0 and time.perf_counter() - t0 < max(5.0, cold / 3)
    assert pd.read_csv(tmp_path / "again" / "score.csv").equals(table)


@pytest.mark.parametrize("model,layer", [("timm:resnet10t", "layer2"),
                                         ("torchvision:mobilenet_v3_small", "features.6")])
def test_score_hub_models_on_the_demo(model, layer, model_file, tmp_path):
    result = run("score", "--model", model, "--layer", layer, "--weights", "none", *SMALL, "--no-observer",
                 "--reference", f"{model_file}:build_small@block2", "--out", tmp_path, "--format", "svg")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and model in result.output  # the summary table
    table = pd.read_csv(tmp_path / "score.csv")
    assert table.loc[0, "model"] == model and table.loc[0, "weights"].startswith("untrained")
    assert (tmp_path / "sensitivity.svg").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_score_on_cuda(model_file, tmp_path):
    result = run("score", "--model", f"{model_file}:build", "--layer", "block2", *SMALL, "--no-observer",
                 "--reference", "none", "--device", "cuda", "--out", tmp_path, "--quiet", "--no-cache")
    assert result.exit_code == 0, result.output
