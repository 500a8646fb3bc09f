"""Reproducibility check with nbval: a re-executed chapter gives the stored outputs.

The quickest chapter is executed (small parameters) with ``scripts/execute_notebooks.py --out``
into a temporary book; nbval then re-executes it and compares every output, after the sanitisers
of ``tests/nbval_sanitize.cfg`` (durations, progress bars, absolute paths, memory addresses).
The same run on a copy whose stored output has one number changed must fail on that cell only.

The whole built book is checked the same way (``make check``):

    pytest -p no:cacheprovider --nbval --nbval-current-env \
        --nbval-sanitize-with tests/nbval_sanitize.cfg book/generated
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
CHAPTER = "01"  # the quickest chapter
NUMBER = re.compile(r"(?<![\w.])(\d+\.(\d{2,}))(?![\d])")

# What the execution and the re-execution share: the cache (so nbval re-runs in seconds), one
# thread (identical floating-point reductions), figures drawn inline, no progress bars, and no
# "IProgress not found" warning (tqdm.auto prints it on stderr only on the first import of timm,
# which a warm cache skips).
ENV_COMMON = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline", "TQDM_DISABLE": "1",
    "PYTHONWARNINGS": "ignore:IProgress not found",
}


def nbval_command(notebook: Path, junit: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval",
            "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), f"--junitxml={junit}",
            str(notebook)]


def cell_results(junit: Path) -> dict[str, bool]:
    """``{"Cell N": passed}`` from nbval's JUnit report (N counts the code cells from 0)."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = any(child.tag in ("failure", "error") for child in case)
        out[case.get("name")] = not failed
    return out


def change_one_number(notebook: Path) -> tuple[str, str, str]:
    """Change the last digit of one printed decimal number in a stored stdout output; returns
    (nbval's cell name, old text, new text)."""
    nb = json.loads(notebook.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for k in reversed(range(len(code))):
        for output in code[k].get("outputs", []):
            if output.get("output_type") != "stream" or output.get("name") != "stdout":
                continue
            text = "".join(output["text"])
            match = NUMBER.search(text)
            if match:
                old = match.group(1)
                new = old[:-1] + str((int(old[-1]) + 1) % 10)
                output["text"] = text[:match.start(1)] + new + text[match.end(1):]
                notebook.write_text(json.dumps(nb))
                return f"Cell {k}", old, new
    raise AssertionError(f"{notebook.name} prints no decimal number to change")


def test_nbval_reproduces_a_chapter_and_fails_when_a_number_changes(tmp_path):
    env = dict(os.environ, **ENV_COMMON, PROBELIB_CACHE=str(tmp_path / "cache"),
               PROBELIB_FIGURES=str(tmp_path / "figures"))
    generated = tmp_path / "book" / "generated"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "execute_notebooks.py"), CHAPTER,
                           "--quick", "--out", str(generated)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (executed,) = generated.glob(f"{CHAPTER}_*.ipynb")

    altered = tmp_path / "altered" / executed.name
    altered.parent.mkdir()
    altered.write_text(executed.read_text())
    cell, old, new = change_one_number(altered)

    # both re-executions at once (each kernel single-threaded)
    runs = {}
    for name, notebook in (("stored", executed), ("altered", altered)):
        junit = tmp_path / f"{name}.xml"
        runs[name] = (junit, subprocess.Popen(nbval_command(notebook, junit), cwd=tmp_path, env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = {name: p.communicate(timeout=600)[0] for name, (_, p) in runs.items()}
    codes = {name: p.returncode for name, (_, p) in runs.items()}

    n_code = sum(c["cell_type"] == "code" for c in json.loads(executed.read_text())["cells"])
    stored = cell_results(runs["stored"][0])
    assert codes["stored"] == 0 and len(stored) == n_code and all(stored.values()), logs["stored"][-6000:]

    changed = cell_results(runs["altered"][0])
    assert codes["altered"] == 1, logs["altered"][-6000:]
    assert [c for c, ok in changed.items() if not ok] == [cell], logs["altered"][-6000:]
    assert old in logs["altered"] and new in logs["altered"]  # the report shows both values
