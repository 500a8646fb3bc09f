"""The book's references and its Sphinx extension, checked without building the book.

* every key cited in book/*.md and in the markdown of notebooks/*.py is an entry of
  book/references.bib (a missing one is an "unknown reference" warning in the build), and every
  entry parses and has an author, a title and a year;
* _config.yml loads sphinxcontrib-bibtex with that file, and the bibliography page is the last
  entry of _toc.yml;
* book/_ext/book_sources.py puts each chapter's jupytext source into the built site and into the
  page's download menu, and takes the repository button's URL from pyproject.toml (a tiny Sphinx
  build with the book's theme, a few seconds).
"""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import book_sources  # noqa: E402

# {cite}`a,b`, {cite:p}`a`, {cite:t}`a`, {cite:ts}`a` ... (MyST roles of sphinxcontrib-bibtex)
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def cited_keys(text: str) -> set[str]:
    return {key.strip() for group in CITE.findall(text) for key in group.split(",") if key.strip()}


def citing_files() -> list[Path]:
    return sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "notebooks").glob("*.py"))


def bib_entries() -> dict:
    from pybtex.database import parse_file
    return parse_file(str(BIB)).entries  # raises on a syntax error or a duplicate key


def test_the_cite_pattern_finds_every_role_and_key():
    text = "as {cite:p}`a2020x, b2021y` and {cite:t}`c` and {cite}`d` but not {ref}`e`"
    assert cited_keys(text) == {"a2020x", "b2021y", "c", "d"}


def test_every_cited_key_is_in_the_bibliography():
    known = set(bib_entries())
    missing = {f"{path.relative_to(ROOT)}: {key}" for path in citing_files()
               for key in cited_keys(path.read_text()) - known}
    assert not missing, "cited but not in book/references.bib:\n" + "\n".join(sorted(missing))


def test_the_pages_cite_the_papers_and_the_data():
    keys = cited_keys((ROOT / "book" / "intro.md").read_text())
    assert {"mcneal2024small", "mcneal2025targeted", "allen2022massive"} <= keys


def test_every_entry_has_author_title_and_year():
    incomplete = [key for key, entry in bib_entries().items()
                  if not (entry.persons.get("author") and entry.fields.get("title")
                          and re.fullmatch(r"\d{4}", entry.fields.get("year", "")))]
    assert not incomplete, f"entries without author, title or year: {incomplete}"


def test_config_loads_the_bibliography_and_the_toc_ends_with_it():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["bibtex_bibfiles"] == ["references.bib"]
    assert (ROOT / "book" / "references.bib").is_file()
    extensions = config["sphinx"]["config"]["extensions"]  # replaces Jupyter Book's list: name both
    assert "sphinxcontrib.bibtex" in extensions and "book_sources" in extensions
    assert (ROOT / config["sphinx"]["local_extensions"]["book_sources"] / "book_sources.py").is_file()
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["parts"][-1]["chapters"][-1]["file"] == "bibliography"
    page = (ROOT / "book" / "bibliography.md").read_text()
    assert "{bibliography}" in page
    # a `:list: bullet` (or enumerated) bibliography has no citation targets: every cite would
    # become a "could not find bibtex key" warning
    assert ":list:" not in page


def test_sphinxcontrib_bibtex_is_pinned_and_in_the_book_extra():
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert "sphinxcontrib-bibtex" in pins
    book = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["book"]
    assert any(req.startswith("sphinxcontrib-bibtex") for req in book)


def test_repository_url_comes_from_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\nDocumentation = "https://d.example"\n')
    assert book_sources.repository_url(pyproject) is None
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\nRepository = "https://github.com/o/r"\n')
    assert book_sources.repository_url(pyproject) == "https://github.com/o/r"
    assert book_sources.repository_url(tmp_path / "absent.toml") is None


@pytest.mark.parametrize("with_url", [False, True], ids=["no-repository-url", "repository-url"])
def test_extension_adds_the_py_download_and_the_repository_button(tmp_path, with_url):
    """A two-page Sphinx project laid out like the book: book/ (sources), notebooks/, pyproject.toml."""
    book, notebooks = tmp_path / "book", tmp_path / "notebooks"
    (book / "generated").mkdir(parents=True)
    notebooks.mkdir()
    (book / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        "extensions = ['sphinx_book_theme', 'book_sources']\n"
        "html_theme = 'sphinx_book_theme'\nhtml_context = {'default_mode': 'light'}\n")
    (book / "index.rst").write_text("Home\n====\n\n.. toctree::\n\n   generated/01_topic\n")
    (book / "generated" / "01_topic.rst").write_text("Chapter\n=======\n\nText.\n")
    (notebooks / "01_topic.py").write_text("# %% [markdown]\n# # Chapter\n")
    urls = '[project.urls]\nRepository = "https://github.com/o/r"\n' if with_url else ""
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\n{urls}')

    out = tmp_path / "_build"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", str(book), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stdout + proc.stderr

    assert (out / "_notebooks" / "01_topic.py").read_text() == (notebooks / "01_topic.py").read_text()
    chapter = (out / "generated" / "01_topic.html").read_text()
    assert 'href="../_notebooks/01_topic.py"' in chapter and "Download source (.py)" in chapter
    assert "_notebooks" not in (out / "index.html").read_text()  # pages without a notebook: no link
    assert ("https://github.com/o/r" in chapter) == with_url
