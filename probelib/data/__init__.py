"""Data sources: the embedded demo (default) and the real Natural Scenes Dataset, one container."""
from __future__ import annotations

from .dataset import Dataset, make_split, probe_images


def load_dataset(dataset: str = "demo", nsd_root=None, **kwargs) -> Dataset:
    """``"demo"`` -> :func:`probelib.data.demo.load_demo`; ``"nsd"`` -> :func:`probelib.data.nsd.load_nsd`.

    The same keyword arguments that the chosen loader accepts pass through, so a notebook's
    ``dataset`` / ``nsd_root`` parameters switch data without changing any other code.
    """
    if dataset == "demo":
        from .demo import load_demo
        return load_demo(**kwargs)
    if dataset == "nsd":
        if nsd_root is None:
            raise ValueError("dataset='nsd' needs nsd_root, the local copy of the NSD bucket "
                             "(see probelib.data.nsd.fetch_nsd)")
        from .nsd import load_nsd
        return load_nsd(nsd_root, **kwargs)
    raise ValueError(f"unknown dataset {dataset!r}; valid: 'demo', 'nsd'")


__all__ = ["Dataset", "make_split", "probe_images", "load_dataset"]
