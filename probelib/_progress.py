"""Progress bars: tqdm's terminal bar on long loops, never where ``TQDM_DISABLE`` is set (the
book's chapters run with it, so no bar reaches a rendered page)."""
from __future__ import annotations

import os

from tqdm import tqdm


def progress_bar(iterable=None, disable: bool = False, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled by ``disable`` or by ``TQDM_DISABLE=1`` (which tqdm
    itself only applies when ``disable`` is not passed)."""
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")
    return tqdm(iterable, disable=bool(disable) or off, **kwargs)
