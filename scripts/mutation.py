"""Mutation testing of the scientific core with mutmut 3 (``make mutation``; not part of ``make test``).

Each module is mutated on its own, in a scratch copy of the repository under
``.cache/mutation/<module>/`` (a ``setup.cfg`` written there configures mutmut: only that module is
mutated, only the tests listed below run, each mutant only against the tests that reach the mutated
function). Results are kept there, so a second run re-tests only mutants whose function changed;
``--fresh`` starts over. The summary (killed / survived per module, the score, the surviving
mutants and the ones judged equivalent) is written to ``benchmarks/MUTATION.md``.

A module with no results under ``.cache/mutation/`` (run on another machine, or its scratch copy
deleted) keeps the table row and the sections it has in the current ``benchmarks/MUTATION.md``:
rewriting the report after running one module never wipes the others back to "not run".

Score = (killed + timeout) / (mutants - equivalent - skipped), where "equivalent" mutants are those
listed in ``benchmarks/mutation_equivalents.txt`` (each with the reason it cannot change behaviour)
and "no tests" mutants (no selected test reaches the function) count as survivors.

Usage::

    python scripts/mutation.py                      # every module (hours on 2 cores)
    python scripts/mutation.py metrics readouts     # some modules
    python scripts/mutation.py probes               # every file of the probes (probes.pgd, ...); nsd alike
    python scripts/mutation.py --report             # rewrite MUTATION.md from the last runs
                                                    # (modules without local results keep their rows)
    python scripts/mutation.py metrics --max-children 1 --fresh
    python scripts/mutation.py geometry --retest    # after adding tests: re-run the survivors (and
                                                    # the mutants whose tests changed)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("PROBELIB_MUTATION_DIR", ROOT / ".cache" / "mutation"))
REPORT = ROOT / "benchmarks" / "MUTATION.md"
EQUIVALENTS = ROOT / "benchmarks" / "mutation_equivalents.txt"


#: tests of the probes (attacks, controls, budgets, results, transfer)
_PROBE_TESTS = ["tests/test_probes.py", "tests/test_properties_probes.py", "tests/test_properties_probes2.py",
                "tests/test_panel_transfer.py"]

#: tests of the NSD loader (fabricated NSD trees in the real format)
_NSD_TESTS = ["tests/test_nsd.py", "tests/test_properties_data.py", "tests/test_properties_nsd.py",
              "tests/test_properties_nsd_rois.py", "tests/test_properties_nsd_design.py",
              "tests/test_properties_nsd_betas.py", "tests/test_properties_nsd_assembly.py"]

#: module -> (files to mutate, test files run against its mutants)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "metrics": (["probelib/metrics.py"], ["tests/test_metrics.py", "tests/test_properties_metrics.py"]),
    # the 45 s learning test of the network readouts is left out: test_properties_readouts trains them in ms
    # (and the slow learning tests of the MLP regressor: scikit-learn's full estimator checks)
    "readouts": (sorted(str(p.relative_to(ROOT)) for p in (ROOT / "probelib" / "readouts").glob("*.py")),
                 ["tests/test_readouts.py", "tests/test_properties_readouts.py", "tests/test_properties_readouts2.py",
                  "tests/test_estimators.py",
                  "--deselect=tests/test_readouts.py::test_network_readouts_learn_and_are_deterministic",
                  "--deselect=tests/test_estimators.py::test_check_estimator_mlp_subset",
                  "--deselect=tests/test_estimators.py::test_mlp_readout_learns"]),
    "geometry": (["probelib/geometry.py"], ["tests/test_geometry.py", "tests/test_properties_geometry.py",
                                            "tests/test_properties_geometry2.py"]),
    "checks": (["probelib/_checks.py"], ["tests/test_properties_checks.py", "tests/test_reliability.py", "tests/test_metrics.py",
                                         "tests/test_properties_probes.py"]),
    # the probes package one file at a time (a file's run fits in one sitting; its row is kept in the
    # report when it has no local results); the cached layer over the probes with the slower tests
    # that reach it
    **{f"probes.{name}": ([f"probelib/probes/{name}.py"], _PROBE_TESTS) for name in (
        "_common", "budgets", "controls", "fgsm", "fixed_effect", "optimize", "pgd", "results", "transfer")},
    "probes.cached": (["probelib/probes/cached.py", "probelib/probes/classification.py"],
                      ["tests/test_properties_cached.py", "tests/test_properties_cache.py", "tests/test_sweeps.py",
                       "tests/test_panel_transfer.py", "tests/test_unit_fits.py", "tests/test_fitting.py",
                       "tests/test_model_comparison.py"]),
    "cache": (["probelib/cache.py"], ["tests/test_properties_cache.py", "tests/test_security.py",
                                      "tests/test_fitting.py"]),
    # the NSD package one file at a time (its tests read fabricated NSD trees: seconds per mutant)
    **{f"nsd.{name}": ([f"probelib/data/nsd/{name}.py"], _NSD_TESTS) for name in (
        "paths", "fetch", "design", "rois", "betas", "assembly")},
    # the study layer's parsing, units, records and runs (a stand-in analysis kind); test_study's runs of
    # the smoke study (minutes each) are left out
    "study": (["probelib/study/spec.py", "probelib/study/units.py"],
              ["tests/test_properties_study.py", "tests/test_study.py",
               *(f"--deselect=tests/test_study.py::{t}" for t in (
                   "test_local_pool_equals_serial_whatever_the_batches",
                   "test_rerun_skips_what_is_done_and_recomputes_only_what_is_missing",
                   "test_a_failing_unit_is_reported_and_does_not_stop_the_others",
                   "test_dask_local_cluster_equals_serial", "test_units_make_the_chapters_cached_calls",
                   "test_records_list_existing_entries", "test_a_study_of_a_users_network_is_keyed_by_its_content"))]),
    # the demo on a stand-in backbone (a dataset in well under a second); tests/test_demo.py checks
    # the real observer, whose features alone take 10-40 s, too slow to run once per mutant
    "demo": (["probelib/data/demo.py"], ["tests/test_properties_demo.py", "tests/test_properties_data.py"]),
}

#: folders of the checkout a module's tests read besides probelib/ and tests/ (copied beside them)
DATA: dict[str, tuple[str, ...]] = {"study": ("studies", "notebooks")}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
          255: "timeout", 37: "type check", -11: "segfault", -9: "segfault", None: "not checked"}

#: statuses re-run by ``--retest`` (a killed mutant stays killed when tests are added)
RETEST = ("survived", "no tests", "suspicious", "segfault")


def _setup_cfg(sources: list[str], tests: list[str], data: tuple[str, ...] = ()) -> str:
    lines = lambda items: "".join(f"\n    {i}" for i in items)  # noqa: E731
    return ("# written by scripts/mutation.py\n"
            "[mutmut]\n"
            "source_paths = probelib\n"
            f"only_mutate ={lines(sources)}\n"
            + (f"also_copy ={lines(data)}\n" if data else "") +
            f"pytest_add_cli_args_test_selection ={lines(tests)}\n"
            "pytest_add_cli_args = -p no:cacheprovider\n"
            "process_isolation = forkserver\n"
            "use_git_change_detection = false\n"
            "timeout_multiplier = 10.0\n"
            "\n"
            "[tool:pytest]\n"
            "addopts = -q\n"
            "filterwarnings = ignore::DeprecationWarning\n")


def _prepare(module: str, fresh: bool) -> Path:
    sources, tests = MODULES[module]
    work = WORK / module
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("probelib", "tests", *DATA.get(module, ())):
        if (work / name).exists():
            shutil.rmtree(work / name)
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    (work / "setup.cfg").write_text(_setup_cfg(sources, [t for t in tests if t.startswith("-") or (ROOT / t).exists()],
                                               DATA.get(module, ())))
    return work


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROBELIB_CACHE")}
    env.update(MPLBACKEND="Agg", PYTHONHASHSEED="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PROBELIB_TEST_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def run_module(module: str, max_children: int, fresh: bool, only: list[str] | None = None,
               retest: bool = False) -> None:
    if retest:   # mutmut keeps a verdict until the function changes: new tests need an explicit rerun
        only = sorted(n for n, s in _results(module).items() if s in RETEST) + list(only or [])
        if not only:
            print(f"== {module}: no surviving mutants to re-test", flush=True)
            return
        print(f"== {module}: re-testing {len(only)} surviving mutants with the current tests", flush=True)
    work = _prepare(module, fresh)
    if retest:   # mutmut maps tests to functions once per test name: an edited test keeps its old map
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    # the mutants' copy of tests/, setup.cfg and data folders must follow the sources: refresh them every run
    for name in ("tests", "setup.cfg", *DATA.get(module, ())):
        target = work / "mutants" / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    print(f"== {module}: mutating {', '.join(MODULES[module][0])}", flush=True)
    t0 = time.time()
    cmd = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    subprocess.run(cmd + list(only or []), cwd=work, env=_env(), check=False)
    # mutmut drops the verdicts of mutants whose tests changed: with names given it leaves them unrun
    unchecked = sum(1 for s in _results(module).values() if s == "not checked")
    if retest and unchecked:
        print(f"== {module}: checking {unchecked} mutants whose tests changed", flush=True)
        subprocess.run(cmd, cwd=work, env=_env(), check=False)
    print(f"== {module}: {time.time() - t0:.0f} s", flush=True)


# ---------------------------------------------------------------------------------------- report

def _results(module: str) -> dict[str, str]:
    """mutant name -> status, from mutmut's ``.meta`` files of the module's last run."""
    out: dict[str, str] = {}
    for src in MODULES[module][0]:
        meta = WORK / module / "mutants" / (src + ".meta")
        if meta.exists():
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            out.update({k: STATUS.get(v, "suspicious") for k, v in codes.items()})
    return out


def _diffs(module: str, names: list[str]) -> dict[str, str]:
    """Unified diff of each mutant (computed by mutmut inside the module's scratch copy)."""
    if not names:
        return {}
    code = ("import json, sys\nfrom mutmut.__main__ import get_diff_for_mutant\n"
            "names = json.load(sys.stdin)\nout = {}\nfor n in names:\n"
            "    try:\n        out[n] = get_diff_for_mutant(n)\n"
            "    except Exception as exc:\n        out[n] = f'(no diff: {exc})'\n"
            "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=WORK / module, env=_env(), input=json.dumps(names),
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def mutant_key(name: str, diff: str) -> str:
    """A name for a mutant that survives renumbering: its function and the lines it changes."""
    func = name.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]
    for prefix in ("x_", "xǁ"):
        func = func.removeprefix(prefix)
    func = func.replace("ǁ", ".")
    minus = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return f"{func}: {' / '.join(minus)} => {' / '.join(plus)}".rstrip()  # as keys are read back (stripped)


def _equivalents() -> dict[str, str]:
    """key -> reason, from ``benchmarks/mutation_equivalents.txt`` (``key<TAB>reason`` lines)."""
    out = {}
    if EQUIVALENTS.exists():
        for line in EQUIVALENTS.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#") and "\t" in line:
                key, reason = line.split("\t", 1)
                out[key.strip()] = reason.strip()
    return out


def previous_report(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The table rows and the sections per module of an existing MUTATION.md.

    Returns (module -> its table line, module -> the lines of its ``### module: ...`` sections, in
    order, the blank line that precedes each heading not included). A "not run" row is left out.
    """
    rows: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("### "):
            if current is not None:   # the blank line before a heading belongs to the heading
                while sections[current] and not sections[current][-1].strip():
                    sections[current].pop()
            name = line[4:].split(":", 1)[0].strip()
            current = name if name in MODULES else None
            if current is not None:
                sections.setdefault(current, []).append("\n" + line)
            continue
        if line.startswith("| ") and current is None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            name = cells[0].split(" (", 1)[0] if cells else ""
            if name in MODULES and len(cells) > 1 and cells[1] != "not run":
                rows[name] = line
            continue
        if current is not None:
            sections[current].append(line)
    for lines in sections.values():   # the blank lines between one module's sections and the next
        while lines and not lines[-1].strip():
            lines.pop()
    return rows, sections


def report(modules: list[str], previous: str = "") -> str:
    """The text of MUTATION.md: modules with local results from them; the others from ``previous``
    (the current MUTATION.md), whose row and sections they keep, or "not run" if it has none."""
    equivalents = _equivalents()
    old_rows, old_sections = previous_report(previous)
    rows, sections = [], []
    for module in modules:
        status = _results(module)
        if not status:
            rows.append(old_rows.get(module, f"| {module} | not run | | | | | | |"))
            sections += old_sections.get(module, [])
            continue
        open_ = sorted(n for n, s in status.items() if s in ("survived", "no tests", "suspicious", "segfault"))
        diffs = _diffs(module, open_)
        equivalent, remaining = [], []
        for n in open_:
            key = mutant_key(n, diffs.get(n, ""))
            (equivalent if key in equivalents else remaining).append((n, key))
        count = lambda *ss: sum(1 for s in status.values() if s in ss)  # noqa: E731
        unchecked = count("not checked")
        status = {n: s for n, s in status.items() if s != "not checked"}
        total, killed = len(status), count("killed", "timeout")
        skipped = count("skipped")
        denom = total - len(equivalent) - skipped
        score = 100.0 * killed / denom if denom else float("nan")
        label = f"{module} (partial: {unchecked} not run)" if unchecked else module
        rows.append(f"| {label} | {total} | {count('killed')} | {count('timeout')} | "
                    f"{count('survived', 'suspicious', 'segfault')} | {count('no tests')} | {len(equivalent)} | "
                    f"**{score:.1f} %** |")
        if remaining:
            sections.append(f"\n### {module}: {len(remaining)} surviving\n\n```diff")
            for n, _ in remaining:
                body = [ln for ln in diffs.get(n, "").splitlines() if ln[:1] in "+-" and ln[:3] not in ("---", "+++")]
                sections.append(f"# {n} ({status[n]})\n" + "\n".join(body))
            sections.append("```")
        if equivalent:
            sections.append(f"\n### {module}: {len(equivalent)} equivalent (excluded from the score)\n")
            sections += [f"- `{key}`: {equivalents[key]}" for _, key in equivalent]
    header = textwrap.dedent("""\
        # Mutation testing of the scientific core

        Written by `scripts/mutation.py` (`make mutation`) with [mutmut](https://pypi.org/project/mutmut/) 3
        (pinned in `requirements-dev.txt`). Each module is mutated on its own and its mutants are run
        against the tests listed for it in `scripts/mutation.py` (only the tests that reach the mutated
        function). Score = (killed + timeout) / (mutants - equivalent); "no tests" mutants (code no
        selected test reaches) count as survivors. Equivalent mutants (no behaviour change) are listed
        with their reason in `benchmarks/mutation_equivalents.txt` and below.

        Run it with `make mutation` (every module, hours on 2 cores) or one module at a time:
        `.venv/bin/python scripts/mutation.py metrics` (`probes` or `nsd` for every file of a package,
        `--only 'probelib.probes.pgd.x__pgd_rows*'` for some functions, `--report` to rewrite this
        file from the last runs). Scratch copies and
        results live in `.cache/mutation/<module>/`; a second run re-tests only changed functions,
        and `--retest` re-runs the survivors of the last run after tests were added.
        A module with no results there keeps its row and sections from the previous version of
        this file.

        Known limit of the tool: mutmut calls every function through a trampoline (one more stack
        frame), so the `stacklevel` of a warning cannot be observed by a test that passes both with
        and without mutmut; those mutants are left as survivors, not counted as equivalent. So are
        mutants of device placements (`device=dev`, `.to(dev)`): only a second device (a GPU) can
        tell them apart, and the machine that wrote this file has none.

        mutmut maps each test to the functions it calls once, in one process: code that runs once per
        process (a class built on first use, a cached import) is mapped to the first test only, and
        its mutants run against that test alone. Keep what is to be tested in module-level functions
        and classes (the scikit-learn `Readout` moved to module level for this reason).

        | module | mutants | killed | timeout | survived | no tests | equivalent | score |
        | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
        """)
    return header + "\n".join(rows) + "\n" + "\n".join(sections) + "\n"


def expand(names: list[str]) -> list[str]:
    """Module names, a package name (``probes``) standing for its files (``probes.pgd``, ...)."""
    return [m for name in names
            for m in ([name] if name in MODULES else [k for k in MODULES if k.startswith(name + ".")])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("modules", nargs="*", help=f"modules (default all): {', '.join(MODULES)}")
    p.add_argument("--max-children", type=int, default=2, help="parallel mutant workers (default 2)")
    p.add_argument("--fresh", action="store_true", help="forget previous results of these modules")
    p.add_argument("--report", action="store_true", help="only rewrite the report from the last runs")
    p.add_argument("--retest", action="store_true",
                   help="re-run the mutants that survived the last run (after tests were added)")
    p.add_argument("--only", nargs="+", metavar="PATTERN",
                   help="run only the mutants whose names match (e.g. 'probelib.probes.pgd.x__pgd_rows*')")
    args = p.parse_args(argv)
    modules = expand(args.modules) if args.modules else list(MODULES)
    unknown = [m for m in args.modules if not expand([m])]
    if unknown:
        p.error(f"unknown modules {unknown}; choose from {list(MODULES)} (or a package: 'probes')")
    if not args.report:
        import importlib.util
        if importlib.util.find_spec("mutmut") is None:
            p.error(f"mutmut is not installed in {sys.executable}: "
                    f"{sys.executable} -m pip install -r requirements-dev.txt (or `make mutation`)")
        for module in modules:
            run_module(module, args.max_children, args.fresh, args.only, args.retest)
    previous = REPORT.read_text(encoding="utf-8") if REPORT.exists() else ""
    REPORT.write_text(report(list(MODULES), previous), encoding="utf-8")
    print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
