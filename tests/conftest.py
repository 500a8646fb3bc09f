import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# two threads (the CI machine's cores); mutation runs set 1, since two workers with two threads each
# oversubscribe two cores and OpenMP's busy waiting then makes the tests 10-100x slower
torch.set_num_threads(int(os.environ.get("PROBELIB_TEST_THREADS", "2")))

ROOT = Path(__file__).resolve().parents[1]
_QUICK_BOOK = pytest.StashKey[Path]()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own probelib cache dir, so no test depends on another's cache."""
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def module_cache(request, tmp_path_factory) -> Path:
    """A cache directory shared by the tests of one module."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "_cache")


@pytest.fixture
def shared_cache(module_cache, monkeypatch) -> Path:
    """Use the module's cache instead of the per-test one (``pytest.mark.usefixtures``): for
    tests that reuse each other's features and fits."""
    monkeypatch.setenv("PROBELIB_CACHE", str(module_cache))
    return module_cache


@pytest.fixture(scope="session")
def chelsea() -> torch.Tensor:
    import skimage.data
    import torch.nn.functional as F
    img = torch.tensor(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True).clamp(0, 1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- the quick book, built once a session --------------------------------------------------------
def stage_book(dest: Path) -> None:
    """Copy what ``jupyter-book build dest`` needs besides ``dest/generated/``: the configuration,
    the pages of book/ and their references, the book's Sphinx extension (at ``book/_ext``,
    relative to ``_config.yml``, as in the repository) and the chapters' jupytext sources (which
    the extension offers as downloads)."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, dest / name)
    if not (dest / "generated" / "findings.md").exists():  # the page "Findings at a glance"
        from probelib import findings
        findings.write_page(dest / "generated" / "findings.md", dest / "generated" / "findings")
    for page in [*(ROOT / "book").glob("*.md"), ROOT / "book" / "references.bib"]:
        shutil.copy(page, dest / page.name)
    shutil.copytree(ROOT / "book" / "_ext", dest / "book" / "_ext", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "notebooks").mkdir(exist_ok=True)
    for source in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"):
        shutil.copy(source, dest / "notebooks" / source.name)


def build_warnings(output: str) -> list[str]:
    """The lines of a ``jupyter-book build`` output that are Sphinx warnings or errors."""
    return [line for line in output.splitlines() if "WARNING:" in line or "ERROR:" in line]


def _mutation_durations(config) -> dict[str, float]:
    """Seconds per test recorded by mutmut (``mutmut-stats.json`` in its copy of the checkout), when
    this run tests a mutant (scripts/mutation.py); otherwise empty."""
    if os.environ.get("MUTANT_UNDER_TEST", "") in ("", "stats", "list_all_tests"):
        return {}
    try:
        return json.loads((Path(str(config.rootpath)) / "mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}


def pytest_collection_modifyitems(config, items):
    """The browser tests run last, on the quick book that tests/test_notebooks.py has built by then.

    A mutant's tests run fastest file first, and in a file fastest test first: its run stops at
    the first failing test, and a file's tests stay together (its module fixtures are set up once)."""
    seconds = _mutation_durations(config)
    if seconds:
        per_file = collections.Counter()
        for item in items:
            per_file[item.path] += seconds.get(item.nodeid, 0.0)
        items.sort(key=lambda item: (per_file[item.path], str(item.path), seconds.get(item.nodeid, 0.0)))
    items.sort(key=lambda item: item.path.name == "test_browser.py")  # stable: order otherwise kept


class _RememberQuickBook:
    """Remembers the directory of tests/test_notebooks.py's quick book, for ``quick_book_html``.

    A plugin rather than a hook of this conftest: a conftest's hooks only see the nodes below it,
    and a session-scoped fixture is set up for the session node.
    """

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        result = yield
        if fixturedef.argname == "quick_book":
            request.config.stash[_QUICK_BOOK] = Path(result)
        return result


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("probelib-quick-book"):
        config.pluginmanager.register(_RememberQuickBook(), "probelib-quick-book")


@pytest.fixture(scope="session")
def quick_book_html(request, tmp_path_factory) -> Path:
    """The HTML of the quick (small-parameter) book.

    The book that tests/test_notebooks.py executed and rendered in this session; rendered here from
    its notebooks if that test did not render them; executed and rendered here if tests/test_notebooks.py
    did not run at all. When its chapters failed this fails at once rather than executing them again.
    """
    book = request.config.stash.get(_QUICK_BOOK, None)
    if book is not None and (book / "_build" / "html" / "index.html").exists():
        return book / "_build" / "html"
    build = tmp_path_factory.mktemp("browserbook")
    names = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))]
    if book is not None:
        missing = [n for n in names if not (book / "generated" / f"{n}.ipynb").exists()]
        if missing:
            pytest.fail(f"no quick book: chapters {missing} failed in tests/test_notebooks.py")
        shutil.copytree(book / "generated", build / "generated")
    else:
        env = dict(os.environ, PROBELIB_CACHE=str(build / "cache"), PROBELIB_FIGURES=str(build / "figures"))
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "execute_notebooks.py"), "--quick",
                               "--out", str(build / "generated")], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stage_book(build)
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(build)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build / "_build" / "html"
