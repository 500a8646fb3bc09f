import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own probelib cache dir, so no test depends on another's cache."""
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def chelsea() -> torch.Tensor:
    import skimage.data
    import torch.nn.functional as F
    img = torch.tensor(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True).clamp(0, 1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
