"""Sphinx extension of the book: each chapter's jupytext source and the repository button.

* **Download the source.** The theme's download menu offers the executed ``.ipynb`` of a chapter
  page, not the jupytext ``notebooks/NN_topic.py`` a reader reruns. For every page whose name
  matches a notebook (``generated/NN_topic`` <- ``notebooks/NN_topic.py``) this copies the ``.py``
  into the built site (``_notebooks/NN_topic.py``) and adds it to that menu as the first entry
  ("Download source (.py)"). The link is relative, so it works in an offline copy of the HTML.
* **Repository button.** The repository URL is written once, in ``pyproject.toml``
  (``[project.urls]``, key ``Repository``, ``Source`` or ``Source code``). When it is there the
  theme's repository button points at it (``path_to_docs = book``, branch ``main``); when it is
  not, no button is shown rather than a link to a guessed address.

Configuration (``sphinx: config:`` in ``_config.yml``): ``book_notebooks_dir`` (default: the
first of ``<srcdir>/../notebooks`` and ``<srcdir>/notebooks`` that exists) and ``book_pyproject``
(default: ``pyproject.toml`` in the parent of the source folder, or in it).
"""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
DOWNLOAD_DIR = "_notebooks"
REPOSITORY_KEYS = ("repository", "source", "source code")


def _first_existing(srcdir: Path, configured: str, candidates: list[str]) -> Path | None:
    paths = [srcdir / configured] if configured else [srcdir / c for c in candidates]
    return next((p.resolve() for p in paths if p.exists()), None)


def repository_url(pyproject: Path | None) -> str | None:
    """The ``Repository`` (or ``Source``) URL of ``[project.urls]`` in ``pyproject``, if any."""
    if pyproject is None or not pyproject.is_file():
        return None
    urls = tomllib.loads(pyproject.read_text()).get("project", {}).get("urls", {})
    return next((url for key, url in urls.items() if key.strip().lower() in REPOSITORY_KEYS), None)


def notebook_source(app, pagename: str) -> Path | None:
    """The jupytext source of page ``pagename`` (``generated/NN_topic``), or None."""
    folder = _first_existing(Path(app.srcdir), app.config.book_notebooks_dir, ["../notebooks", "notebooks"])
    if folder is None:
        return None
    path = folder / f"{pagename.rsplit('/', 1)[-1]}.py"
    return path if path.is_file() else None


def _configure(app, config) -> None:
    srcdir = Path(app.srcdir)
    pyproject = _first_existing(srcdir, config.book_pyproject, ["../pyproject.toml", "pyproject.toml"])
    url = repository_url(pyproject)
    if url:
        options = dict(config.html_theme_options or {})
        if not options.get("repository_url"):
            options.update(repository_url=url, path_to_docs="book", repository_branch="main")
        options["use_repository_button"] = True
        config.html_theme_options = options


def _add_download(app, pagename, templatename, context, doctree) -> None:
    source = notebook_source(app, pagename)
    if source is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / DOWNLOAD_DIR / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    entry = {
        "type": "link",
        "url": context["pathto"](f"{DOWNLOAD_DIR}/{source.name}", 1),
        "text": "Download source (.py)",
        "tooltip": "The chapter's jupytext source, to rerun it",
        "icon": "fas fa-file-code",
        "label": "download-notebook-source-button",
    }
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            button["buttons"].insert(0, entry)
            return
    LOGGER.warning("book_sources: the theme has no download menu on %s; no .py link added", pagename,
                   type="book_sources", subtype="download")


def setup(app):
    app.add_config_value("book_notebooks_dir", "", "env")
    app.add_config_value("book_pyproject", "", "env")
    app.connect("config-inited", _configure)
    # after the theme has built its header buttons (sphinx_book_theme: priority 501)
    app.connect("html-page-context", _add_download, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
