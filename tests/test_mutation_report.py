"""scripts/mutation.py --report: modules without local results keep their rows and sections (no mutmut run)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def mutation(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("_mutation_script", ROOT / "scripts" / "mutation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "WORK", tmp_path / "none")   # no local results for any module
    monkeypatch.setattr(mod, "EQUIVALENTS", tmp_path / "equivalents.txt")
    return mod


PREVIOUS = """\
# header

| module | mutants | killed | timeout | survived | no tests | equivalent | score |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| metrics | not run | | | | | | |
| readouts | not run | | | | | | |
| geometry (partial: 362 not run) | 383 | 353 | 0 | 30 | 0 | 20 | **97.2 %** |
| checks | 138 | 137 | 0 | 1 | 0 | 1 | **100.0 %** |
| probes._common | not run | | | | | | |
| probes.budgets | not run | | | | | | |
| probes.controls | not run | | | | | | |
| probes.fgsm | not run | | | | | | |
| probes.fixed_effect | not run | | | | | | |
| probes.optimize | not run | | | | | | |
| probes.pgd | not run | | | | | | |
| probes.results | not run | | | | | | |
| probes.transfer | not run | | | | | | |
| probes.cached | not run | | | | | | |
| cache | not run | | | | | | |
| nsd.paths | not run | | | | | | |
| nsd.fetch | not run | | | | | | |
| nsd.design | not run | | | | | | |
| nsd.rois | not run | | | | | | |
| nsd.betas | not run | | | | | | |
| nsd.assembly | not run | | | | | | |
| study | not run | | | | | | |
| demo | not run | | | | | | |

### geometry: 1 surviving

```diff
# probelib.geometry.x__f64__mutmut_1 (survived)
-    a
+    b
```

### geometry: 1 equivalent (excluded from the score)

- `f: a => b`: why

### checks: 1 equivalent (excluded from the score)

- `check_units: c => d`: why not
"""


def test_previous_report_parses_rows_and_sections(mutation):
    rows, sections = mutation.previous_report(PREVIOUS)
    assert set(rows) == {"geometry", "checks"}          # "not run" rows are not kept
    assert rows["geometry"].startswith("| geometry (partial: 362 not run) | 383 |")
    assert sections["geometry"][0] == "\n### geometry: 1 surviving"
    assert "\n### geometry: 1 equivalent (excluded from the score)" in sections["geometry"]
    assert sections["checks"] == ["\n### checks: 1 equivalent (excluded from the score)", "",
                                  "- `check_units: c => d`: why not"]


def test_report_without_local_results_keeps_the_previous_rows_and_sections(mutation):
    text = mutation.report(list(mutation.MODULES), PREVIOUS)
    table_and_after = text[text.index("| module |"):]
    assert table_and_after == PREVIOUS[PREVIOUS.index("| module |"):]
    # and rewriting it again changes nothing
    assert mutation.report(list(mutation.MODULES), text) == text
    # the real report survives a rewrite without any local result
    real = (ROOT / "benchmarks" / "MUTATION.md").read_text(encoding="utf-8")
    assert mutation.report(list(mutation.MODULES), real).split("| module |", 1)[1] == real.split("| module |", 1)[1]


def test_report_replaces_only_the_modules_with_local_results(mutation, monkeypatch):
    name = "probelib.geometry.x_f__mutmut_1"
    monkeypatch.setattr(mutation, "_results", lambda m: {name: "killed", name[:-1] + "2": "survived"}
                        if m == "geometry" else {})
    monkeypatch.setattr(mutation, "_diffs", lambda m, names: {n: "--- a\n+++ b\n-    x = 1\n+    x = 2\n" for n in names})
    text = mutation.report(list(mutation.MODULES), PREVIOUS)
    assert "| geometry | 2 | 1 | 0 | 1 | 0 | 0 | **50.0 %** |" in text
    assert "### geometry: 1 surviving" in text and "x__f64__mutmut_1" not in text   # old geometry sections gone
    assert "| checks | 138 | 137 | 0 | 1 | 0 | 1 | **100.0 %** |" in text             # checks kept
    assert "- `check_units: c => d`: why not" in text
    assert "| metrics | not run | | | | | | |" in text


def test_retest_reruns_exactly_the_surviving_mutants(mutation, monkeypatch):
    """--retest: mutmut keeps verdicts until a function changes, so survivors are named to re-run them."""
    status = {"probelib.geometry.x_f__mutmut_1": "killed", "probelib.geometry.x_f__mutmut_2": "survived",
              "probelib.geometry.x_g__mutmut_1": "no tests", "probelib.geometry.x_g__mutmut_2": "timeout",
              "probelib.geometry.x_h__mutmut_1": "not checked"}
    monkeypatch.setattr(mutation, "_results", lambda module: status)
    monkeypatch.setattr(mutation, "_prepare", lambda module, fresh: mutation.WORK)
    calls = []
    monkeypatch.setattr(mutation.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    mutation.run_module("geometry", 1, False, retest=True)
    named, plain = calls
    assert named[named.index("run"):] == ["run", "--max-children", "1", "probelib.geometry.x_f__mutmut_2",
                                          "probelib.geometry.x_g__mutmut_1"]
    # then a plain run for the mutants mutmut left unchecked (their tests changed)
    assert plain[plain.index("run"):] == ["run", "--max-children", "1"]
    calls.clear()
    del status["probelib.geometry.x_h__mutmut_1"]
    mutation.run_module("geometry", 1, False, retest=True)
    assert len(calls) == 1                 # nothing left unchecked: the named run only
    calls.clear()
    monkeypatch.setattr(mutation, "_results", lambda module: {"probelib.geometry.x_f__mutmut_1": "killed"})
    mutation.run_module("geometry", 1, False, retest=True)
    assert calls == []   # nothing survived: mutmut is not started (it would re-run every mutant)


def test_a_package_name_stands_for_its_files(mutation):
    probes = mutation.expand(["probes"])
    assert "probes.pgd" in probes and "probes.cached" in probes and all(m.startswith("probes.") for m in probes)
    assert mutation.expand(["metrics", "probes.pgd"]) == ["metrics", "probes.pgd"]
    assert mutation.expand(["prob"]) == [] and mutation.expand(["nope"]) == []
    # every file of the package is mutated by exactly one module
    files = [f for m in probes for f in mutation.MODULES[m][0]]
    expected = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "probelib" / "probes").glob("*.py")
                      if p.name != "__init__.py")
    assert sorted(files) == expected
    with pytest.raises(SystemExit):
        mutation.main(["nope", "--report"])
