"""The quick book as a reader sees it: headless Chromium, offline, on a local HTTP server.

For the intro and every chapter: every formula is typeset (no raw TeX in the visible text), every
<img> loads, no JavaScript error, no request leaves the machine, no stderr or progress output, and
the first screen shows the title and narrative, not code. Screenshots of every page are kept in
_build/screenshots. Needs Debian's ``chromium`` package (scripts/install_test_deps.sh installs it
as root; ``make test`` runs that script): without it the browser tests skip, except in CI (``$CI``
set), where they fail.
"""
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import browser_check  # noqa: E402
from execute_notebooks import chapters  # noqa: E402

PAGES = ["intro", "generated/findings"] + [f"generated/{p.stem}" for p in chapters()]
SCREENSHOTS = ROOT / "_build" / "screenshots"


@pytest.fixture(scope="session")
def chromium():
    exe = browser_check.find_chromium()
    if exe is None:
        reason = ("headless Chromium not found: install Debian's `chromium` package "
                  "(`apt-get install chromium`, or `scripts/install_test_deps.sh` as root)")
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; in CI the browser tests must run")
        pytest.skip(reason)
    with browser_check.Chromium(exe) as browser:
        yield browser


@pytest.fixture(scope="session")
def site(chromium, quick_book_html):
    with browser_check.serve(quick_book_html) as base:
        yield base


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_page_in_browser(page, chromium, site):
    name = page.rsplit("/", 1)[-1]
    report = browser_check.check_page(chromium, f"{site}/{page}.html", SCREENSHOTS / name)
    assert report["requests"], "no request was recorded: the recorder does not work"
    problems = browser_check.problems(report, chapter=browser_check.is_chapter(page))
    assert not problems, f"{page} (screenshot {report.get('screenshot')}):\n" + "\n".join(problems)


class _Loads(HTMLParser):
    """The URLs an HTML page makes the browser load (not the links a reader may follow)."""
    LOADS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src",
             "audio": "src", "embed": "src", "object": "data"}
    REL = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "prefetch", "manifest"}

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.LOADS and a.get(self.LOADS[tag]):
            self.urls.append(a[self.LOADS[tag]])
        if tag == "link" and self.REL & set((a.get("rel") or "").split()) and a.get("href"):
            self.urls.append(a["href"])


def test_built_html_loads_nothing_remote(quick_book_html):
    """No page of the built book asks for a script, style sheet, font or image from another host."""
    remote = {}
    for page in sorted(quick_book_html.rglob("*.html")):
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        urls = [u for u in parser.urls if re.match(r"(https?:)?//", u)]
        if urls:
            remote[str(page.relative_to(quick_book_html))] = urls
    assert not remote, remote
    assert (quick_book_html / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax is not in the build"


BROKEN_PAGE = r"""<!DOCTYPE html><html><head><title>broken</title></head><body><main><section>
<h1>A broken page</h1><p>Raw TeX: \(\epsilon \le 3/255\)</p><span class="math">\(x\)</span>
<img src="missing.png"><img src="https://cdn.example.org/remote.png">
<div class="cell"><div class="cell_output"><div class="output stderr"><pre>TqdmWarning: x</pre></div></div></div>
<script>undefined_function();</script></section></main></body></html>"""


def test_checker_reports_a_broken_page(chromium, tmp_path):
    """The checks can fail: raw TeX, a missing image, a remote request, a JS error, stderr, code first."""
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    with browser_check.serve(tmp_path) as base:
        report = browser_check.check_page(chromium, f"{base}/broken.html")
    problems = "\n".join(browser_check.problems(report, chapter=True))
    for expected in ("raw TeX", "not typeset", "images that did not load", "JavaScript errors",
                     "requests that leave the machine", "stderr", "code or output on the first screen",
                     "Run this chapter with other parameters"):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"
    assert report["remote_requests"] == ["https://cdn.example.org/remote.png"]


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_chapter_opens_with_narrative_then_its_parameters_box(path):
    """Source order a reader sees: narrative first, the titled parameters box with the command for
    this chapter, the visible parameters cell, then the set-up cell collapsed."""
    import jupytext

    cells = jupytext.read(path).cells
    tags = [c.metadata.get("tags", []) for c in cells]
    p = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert p >= 2 and all(c.cell_type == "markdown" for c in cells[:p]), "code before the parameters cell"
    box = cells[p - 1].source
    assert box.startswith("````{admonition} " + browser_check.PARAMETERS_TITLE), box[:80]
    assert f"scripts/execute_notebooks.py {path.stem[:2]}" in box and " -p " in box
    assert not {"hide-input", "remove-input", "remove-cell", "hide-cell"} & set(tags[p])
    setup = next(i for i in range(p + 1, len(cells)) if cells[i].cell_type == "code")
    assert "hide-input" in tags[setup], "the set-up cell after the parameters is not collapsed"
