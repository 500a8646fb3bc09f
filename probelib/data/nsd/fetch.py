""":func:`fetch_nsd`: download the files :func:`load_nsd` needs (resumable, size-checked)."""
from __future__ import annotations

import http.client
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from ..._progress import progress_bar
from .paths import NSD_BASE_URL, nsd_files


def _remote_size(url: str, timeout: float) -> int | None:
    """Size in bytes from a HEAD request (or a 1-byte ranged GET if HEAD is refused); None if unknown."""
    try:
        with urlopen(Request(url, method="HEAD"), timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None else None
    except HTTPError as exc:
        if exc.code not in (403, 405, 501):
            raise
    with urlopen(Request(url, headers={"Range": "bytes=0-0"}), timeout=timeout) as resp:
        total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
        return int(total) if total.isdigit() else None


def _download(url: str, relpath: str, dest: Path, timeout: float, progress: bool,
              block: int = 1 << 20) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a previous partial download."""
    part = dest.with_name(dest.name + ".part")
    size = _remote_size(url, timeout)
    if dest.is_file():
        if size is None or dest.stat().st_size == size:
            return                                          # complete (or no size to compare with)
        dest.unlink()                                       # stale or truncated copy: fetch afresh
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    if size is None or start < size:
        headers = {"Range": f"bytes={start}-"} if start else {}
        with urlopen(Request(url, headers=headers), timeout=timeout) as resp:
            if start and (resp.status != 206 or
                          not (resp.headers.get("Content-Range") or "").startswith(f"bytes {start}-")):
                start = 0                                   # server ignored the range: start over
            with open(part, "ab" if start else "wb") as f, \
                    progress_bar(total=size, initial=start, unit="B", unit_scale=True, leave=False,
                         desc=Path(relpath).name, disable=not progress) as bar:
                while data := resp.read(block):
                    f.write(data)
                    bar.update(len(data))
    got = part.stat().st_size
    if size is not None and got != size:
        raise OSError(f"got {got} of {size} bytes")
    os.replace(part, dest)


def fetch_nsd(root: str | os.PathLike, subjects: int | Sequence[int], base_url: str = NSD_BASE_URL,
              betas_format: str = "nifti", sessions: int | Mapping[int, int] | None = None,
              progress: bool = True, include_stimuli: bool = True, timeout: float = 60.0) -> list[Path]:
    """Download the NSD files :func:`load_nsd` needs for ``subjects`` into ``root``.

    Files already present with the size the server reports (``Content-Length`` of a HEAD request)
    are skipped; an interrupted download is kept as ``<file>.part`` and resumed with an HTTP Range
    request on the next call. The full set per subject is ~40 GB of betas (NIfTI) plus the ~37 GB
    stimulus file shared by all subjects. Returns the local paths, in :func:`nsd_files` order.
    Errors name the URL and relative path; HTTP 404 raises ``FileNotFoundError``.
    """
    root = Path(root)
    paths = []
    files = nsd_files(subjects, betas_format, sessions, include_stimuli)
    for rel in progress_bar(files, desc="NSD files", unit="file", disable=not progress):
        url = f"{base_url.rstrip('/')}/{quote(rel)}"
        try:
            _download(url, rel, root / rel, timeout, progress)
        except HTTPError as exc:
            err = FileNotFoundError if exc.code == 404 else OSError
            raise err(f"download of NSD file {rel} from {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except (URLError, OSError, http.client.HTTPException) as exc:
            raise OSError(f"download of NSD file {rel} from {url} failed ({type(exc).__name__}: {exc}); "
                          "call fetch_nsd again to resume it") from exc
        paths.append(root / rel)
    return paths
