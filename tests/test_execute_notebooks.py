"""scripts/execute_notebooks.py on two tiny fake chapters (a kernel start each, no probelib).

Parameters are checked against each chapter's parameters cell and converted to the type of the
default before anything runs; a failed chapter never replaces the previous output.
"""
import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import ParameterError, convert, main, notebook_errors, resolve_parameters  # noqa: E402

ALPHA = '''# %% [markdown]
# # Alpha

# %% tags=["parameters"]
quick = False
size = 3
scale = 1.0
label = "x"
items = [1, 2]
root = None

# %%
for name in ("quick", "size", "scale", "label", "items", "root"):
    print(f"{name}={globals()[name]!r}:{type(globals()[name]).__name__}")
'''

BETA = '''# %% tags=["parameters"]
quick = False
explode = False

# %%
if explode:
    raise RuntimeError("chapter exploded on purpose")
print("beta ran")
'''

PREVIOUS = b'{"previous": "good output"}\n'


@pytest.fixture
def book(tmp_path, monkeypatch):
    """Two fake chapters and an output directory; the environment the runner changes is restored."""
    nb = tmp_path / "notebooks"
    nb.mkdir()
    (nb / "01_alpha.py").write_text(ALPHA)
    (nb / "02_beta.py").write_text(BETA)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return nb, tmp_path / "generated"


def run(book, *args):
    nb, out = book
    return main([*map(str, args), "--notebooks", str(nb), "--out", str(out)])


def printed(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


# --- parameters (class 4) -------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_unknown_parameter_is_an_error_listing_the_valid_names(book, capsys, jobs):
    assert run(book, "01", "-p", "sise", "48", "--jobs", jobs) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'sise' for chapter 01_alpha" in err
    assert "valid: quick, size, scale, label, items, root" in err
    assert not book[1].exists(), "something was executed"


@pytest.mark.parametrize("jobs", [1, 2])
def test_unknown_parameter_of_several_chapters_stops_before_any_runs(book, capsys, jobs):
    assert run(book, "-p", "explode", "true", "-p", "sise", "48", "--jobs", jobs) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'sise'" in err and "explode" in err and "size" in err
    assert not book[1].exists(), "something was executed"


@pytest.mark.parametrize("name, value, message", [
    ("quick", "maybe", "chapter 01_alpha: parameter 'quick' expects a bool (true/false/1/0/yes/no); got 'maybe'"),
    ("size", "0.5", "chapter 01_alpha: parameter 'size' expects an int; got '0.5'"),
    ("scale", "big", "chapter 01_alpha: parameter 'scale' expects a float; got 'big'"),
    ("items", "3", "chapter 01_alpha: parameter 'items' expects a list"),
])
@pytest.mark.parametrize("jobs", [1, 2])
def test_bad_parameter_value_is_an_error_before_anything_runs(book, capsys, name, value, message, jobs):
    assert run(book, "-p", name, value, "--jobs", jobs) == 2
    assert message in capsys.readouterr().err
    assert not book[1].exists(), "something was executed"


def test_parameter_values_take_the_type_of_the_default():
    for text in ("false", "False", "0", "no", "NO"):
        assert convert("q", text, True) is False
    for text in ("true", "TRUE", "1", "yes"):
        assert convert("q", text, False) is True
    assert convert("n", "48", 128) == 48 and type(convert("n", "48", 128)) is int
    assert convert("x", "3", 1.0) == 3.0 and type(convert("x", "3", 1.0)) is float
    assert convert("x", "0.5", 1.0) == 0.5
    assert convert("n", "None", 12) is None
    assert convert("s", "None", "demo") == "None" and convert("s", "[1]", "demo") == "[1]"
    assert convert("r", "/data/nsd", None) == "/data/nsd"
    assert convert("m", '["a", "b"]', None) == ["a", "b"]
    assert convert("e", "[0.5, 1]", [1, 2]) == [0.5, 1]
    assert convert("e", "[1, 2]", (3,)) == (1, 2)
    assert convert("q", True, False) is True  # --quick's typed value
    for text, default in [("maybe", False), ("2", False), ("0.5", 3), ("x", 1.0), ("3", [1]), ("'a'", (1,))]:
        with pytest.raises(ParameterError):
            convert("p", text, default)


def test_parameter_declared_by_one_chapter_goes_only_to_it(book):
    nb, _ = book
    alpha, beta = nb / "01_alpha.py", nb / "02_beta.py"
    resolved = resolve_parameters([alpha, beta], [("explode", "yes"), ("quick", True)])
    assert resolved == {alpha: {"quick": True}, beta: {"explode": True, "quick": True}}


def test_parameter_quick_false_is_a_real_false_in_the_notebook(book):
    code = run(book, "01", "-p", "quick", "false", "-p", "size", "5", "-p", "scale", "3",
               "-p", "items", "[7]", "-p", "root", "/data/nsd", "-p", "label", "None")
    assert code == 0
    text = printed(book[1] / "01_alpha.ipynb")
    for line in ["quick=False:bool", "size=5:int", "scale=3.0:float", "items=[7]:list",
                 "root='/data/nsd':str", "label='None':str"]:
        assert line in text, text


# --- failed chapters (class 5) --------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_failed_chapter_leaves_the_previous_output_untouched(book, capsys, jobs):
    nb, out = book
    out.mkdir()
    for stem in ("01_alpha", "02_beta"):
        (out / f"{stem}.ipynb").write_bytes(PREVIOUS)
    # explode is declared by 02_beta only, so it goes to that chapter alone
    assert run(book, "--quick", "-p", "explode", "true", "--jobs", jobs) == 1
    err = capsys.readouterr().err
    assert (out / "02_beta.ipynb").read_bytes() == PREVIOUS, "the failed chapter replaced the good output"
    assert "quick=True:bool" in printed(out / "01_alpha.ipynb"), "the good chapter was not replaced"
    kept = out.parent / "_build" / "failed" / "02_beta.ipynb"
    assert kept.exists() and notebook_errors(kept), "the failed notebook was not kept for inspection"
    assert "02_beta" in err and "chapter exploded on purpose" in err and str(kept) in err
    assert "failed chapters: ['02_beta']" in err
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".ipynb") == ["01_alpha.ipynb", "02_beta.ipynb"]

    # the next successful run replaces the output and drops the stale failed copy
    assert run(book, "02", "--jobs", jobs) == 0
    assert "beta ran" in printed(out / "02_beta.ipynb") and not kept.exists()


def test_failed_chapter_check_refuses_error_notebooks(book, capsys):
    nb, out = book
    out.mkdir()
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nbformat.write(good, out / "01_alpha.ipynb")
    assert run(book, "01", "--check") == 0
    assert run(book, "--check") == 1  # 02_beta was never executed
    assert "02_beta.ipynb: not executed" in capsys.readouterr().err

    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError")])
    bad.cells[0].outputs = [nbformat.v4.new_output("error", ename="RuntimeError", evalue="boom", traceback=[])]
    nbformat.write(bad, out / "02_beta.ipynb")
    assert run(book, "--check") == 1
    assert "02_beta.ipynb: cell 0: RuntimeError: boom" in capsys.readouterr().err

    bad.cells[0].outputs = []
    bad.cells[0].metadata["papermill"] = {"exception": True}
    nbformat.write(bad, out / "02_beta.ipynb")
    assert run(book, "--check") == 1
    assert "papermill error marker" in capsys.readouterr().err


def test_ladders_are_prepared_only_for_full_demo_runs_that_use_them(tmp_path, monkeypatch):
    """The demo's adversarial ladders are trained before the chapters, except in quick mode, for
    another dataset, inside a chapter's child process, or when no selected chapter uses them."""
    import execute_notebooks

    started = []
    monkeypatch.setattr(execute_notebooks.subprocess, "Popen", lambda *a, **k: started.append(a) or 1 / 0)
    monkeypatch.delenv("PROBELIB_LADDERS_PREPARED", raising=False)
    uses = tmp_path / "04_x.py"
    uses.write_text("models = demo_ladder('mobilenet_v2')\n")
    plain = tmp_path / "01_x.py"
    plain.write_text("x = 1\n")
    execute_notebooks.prepare_ladders([uses], [("quick", True)], 2)
    execute_notebooks.prepare_ladders([uses], [("dataset", "nsd")], 2)
    execute_notebooks.prepare_ladders([plain], [], 2)
    monkeypatch.setenv("PROBELIB_LADDERS_PREPARED", "1")
    execute_notebooks.prepare_ladders([uses], [], 2)
    assert started == []
    monkeypatch.delenv("PROBELIB_LADDERS_PREPARED")
    with pytest.raises(ZeroDivisionError):  # a full demo run that uses the ladders starts the training
        execute_notebooks.prepare_ladders([uses], [], 2)
    assert len(started) == 1
