"""Execute every chapter notebook (jupytext percent .py) with papermill into book/generated/.

    python scripts/execute_notebooks.py                 # full demo parameters (for the book)
    python scripts/execute_notebooks.py --quick         # small parameters (what the tests run)
    python scripts/execute_notebooks.py 03 -p dataset nsd -p nsd_root /data/nsd
    python scripts/execute_notebooks.py --jobs 1        # one chapter at a time, all cores each
    python scripts/execute_notebooks.py --check         # every chapter in book/generated executed cleanly?

Chapters run ``--jobs`` at a time (default: one per CPU core, at most 4), each kernel with
``cores // jobs`` torch/BLAS threads (no more than ``$OMP_NUM_THREADS`` if set); on 2 cores two
single-threaded kernels finish the book about twice as fast as one two-threaded kernel. The
longest chapters (by the last run's timings) start first.

Parameters (``-p NAME VALUE``) are checked before any chapter starts, against the cell tagged
``parameters`` of each selected chapter. A name must be declared by at least one selected chapter
and is passed only to the chapters that declare it (``-p eps_focus 5`` on the whole book reaches
chapter 03 alone; a name no selected chapter declares, such as a misspelling, is an error). The
value is converted to the type of that chapter's default: bool (true/false/1/0/yes/no, any case),
int, float (an int such as ``3`` is accepted and becomes ``3.0``), str (taken as is), list or tuple
(a Python literal such as ``"[1, 2]"``). ``None`` is accepted for every parameter whose default is
not a bool or a str; a parameter whose default is ``None`` (or not a literal) takes a Python literal,
or else the string as is. ``--quick`` is ``-p quick true`` (an explicit ``-p quick`` wins). A bad
name or value ends the run with exit code 2 before anything executes.

Each chapter is executed into a temporary file next to its output, which replaces
``<out>/<stem>.ipynb`` only when the whole notebook ran: a failed chapter leaves the previous output
as it was and is kept for inspection in ``<out>/../_build/failed/<stem>.ipynb`` (outside the
book's sources). The exit code is 1 if any chapter failed. ``--check`` exits 1 if a chapter's
output is missing or holds an error (papermill's exception marker or an error output), so that
``make book`` never renders a failed chapter.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_DEFAULT_JOBS = 4  # each kernel holds its models and data in memory
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ParameterError(ValueError):
    """A ``-p NAME VALUE`` that a chapter does not declare, or a value of the wrong type."""


def chapters(selection: list[str] | None = None, notebooks: Path = NOTEBOOKS) -> list[Path]:
    notebooks = Path(notebooks)
    paths = sorted(notebooks.glob("[0-9][0-9]_*.py"))
    if selection:
        paths = [p for p in paths if any(p.name.startswith(s) or p.stem == s for s in selection)]
        if not paths:
            raise SystemExit(f"no chapter matches {selection}; chapters: {[p.stem for p in sorted(notebooks.glob('*.py'))]}")
    return paths


def failed_path(path: Path, out_dir: Path) -> Path:
    """Where the executed notebook of a failed chapter is kept (outside the book's sources)."""
    return Path(out_dir).resolve().parent / "_build" / "failed" / f"{path.stem}.ipynb"


def execute(path: Path, out_dir: Path, parameters: dict) -> Path:
    """Convert ``path`` to a notebook, run it with papermill (cwd = out_dir), write out_dir/<stem>.ipynb.

    The notebook is executed into a temporary file in ``out_dir`` that replaces the output only on
    success. On failure the output is left as it was, the executed notebook is moved to
    ``failed_path(path, out_dir)`` and the exception propagates.
    """
    import jupytext
    import nbformat
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = out_dir / f"{path.stem}.ipynb"
    failed = failed_path(path, out_dir)
    # the kernel must draw figures into the notebook (inline), whatever backend the caller uses
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars inside the rendered book
    # the chapters record their verdicts next to their executed notebooks (probelib.findings)
    os.environ["PROBELIB_FINDINGS"] = str(out_dir.resolve() / "findings")
    # hidden, unique, on the same filesystem as the output (so that os.replace is atomic)
    partial = out_dir / f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial.ipynb"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"{path.stem}.ipynb"
            nbformat.write(nb, src)
            try:
                papermill.execute_notebook(str(src), str(partial), parameters=parameters,
                                           kernel_name="python3", cwd=str(out_dir), progress_bar=False)
            except Exception as exc:
                if partial.exists() and partial.stat().st_size:
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(partial, failed)
                    exc.add_note(f"{path.stem}: the failed notebook is kept in {failed}; "
                                 f"{out} was left as it was")
                raise
        os.replace(partial, out)
        failed.unlink(missing_ok=True)  # a stale copy of an earlier failure
    finally:
        partial.unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# parameters


def _default(node: ast.expr):
    """The default of a parameters-cell assignment: a literal, simple arithmetic on numbers
    (``3 / 255``), or ``...`` when it is neither (its type is then unknown)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        pass
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)
    if all(isinstance(n, allowed) for n in ast.walk(ast.Expression(node))):
        try:
            value = eval(compile(ast.Expression(node), "<parameters>", "eval"), {"__builtins__": {}})
        except Exception:
            return ...
        if isinstance(value, (int, float)):
            return value
    return ...


def declared_parameters(path: Path) -> dict:
    """Names and defaults of the cell tagged ``parameters`` of a chapter ({} if it has none)."""
    import jupytext

    nb = jupytext.read(path)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    declared = {}
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as exc:
            raise ParameterError(f"chapter {path.stem}: its parameters cell is not plain Python ({exc})")
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets, value = [stmt.target], stmt.value
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name):
                    declared[target.id] = _default(value)
    return declared


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def convert(name: str, text, default, chapter: str = ""):
    """``text`` (a command-line string, or an already typed value) as the type of ``default``."""
    where = f"chapter {chapter}: " if chapter else ""

    def bad(expects: str) -> ParameterError:
        return ParameterError(f"{where}parameter {name!r} expects {expects}; got {text!r}")

    if not isinstance(text, str):  # a typed value (e.g. --quick's True) is checked, not parsed
        if default is None or default is ... or text is None or type(text) is type(default):
            return text
        if isinstance(default, float) and type(text) is int:
            return float(text)
        if isinstance(default, (list, tuple)) and isinstance(text, (list, tuple)):
            return type(default)(text)
        raise bad(f"a {type(default).__name__}")
    if isinstance(default, bool):
        try:
            return BOOLEANS[text.strip().lower()]
        except KeyError:
            raise bad("a bool (true/false/1/0/yes/no)") from None
    if isinstance(default, str):
        return text
    if text.strip() == "None":
        return None
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise bad("an int") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise bad("a float") from None
    if isinstance(default, (list, tuple)):
        value = _literal(text)
        if not isinstance(value, (list, tuple)):
            raise bad(f"a {type(default).__name__} as a Python literal such as '[1, 2]'")
        return type(default)(value)
    if default is None or default is ...:
        return _literal(text)
    value = _literal(text)  # dict, set, complex...: a literal of the same type
    if type(value) is not type(default):
        raise bad(f"a {type(default).__name__} as a Python literal")
    return value


def resolve_parameters(paths: list[Path], given: list[tuple[str, object]]) -> dict[Path, dict]:
    """The typed parameters of each chapter, from ``(name, value)`` pairs; ParameterError (listing
    every problem) when a name is declared by no chapter or a value does not fit a chapter's default.
    A name goes only to the chapters that declare it."""
    declared = {p: declared_parameters(p) for p in paths}
    errors, resolved = [], {p: {} for p in paths}
    for name, value in given:
        owners = [p for p in paths if name in declared[p]]
        if not owners:
            names = list(dict.fromkeys(n for p in paths for n in declared[p]))
            where = "chapter" + ("s " if len(paths) > 1 else " ") + ", ".join(p.stem for p in paths)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            valid = ", ".join(names) or "(none: no parameters cell)"
            errors.append(f"unknown parameter {name!r} for {where}{hint}; valid: {valid}")
            continue
        for p in owners:
            try:
                resolved[p][name] = convert(name, value, declared[p][name], p.stem)
            except ParameterError as exc:
                errors.append(str(exc))
    if errors:
        raise ParameterError("\n".join(dict.fromkeys(errors)))
    return resolved


# ---------------------------------------------------------------------------------------------
# checking executed chapters


def notebook_errors(path: Path) -> list[str]:
    """Why an executed notebook must not be rendered as a chapter ([] if it ran cleanly)."""
    try:
        nb = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return [f"cannot be read ({exc})"]
    problems = []
    if nb.get("metadata", {}).get("papermill", {}).get("exception"):
        problems.append("papermill recorded an exception")
    for i, cell in enumerate(nb.get("cells", [])):
        meta = cell.get("metadata", {})
        tags = meta.get("tags", [])
        if "papermill-error-cell-tag" in tags or meta.get("papermill", {}).get("exception"):
            problems.append(f"cell {i}: papermill error marker")
        elif "raises-exception" not in tags:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    problems.append(f"cell {i}: {output.get('ename')}: {output.get('evalue')}")
    return list(dict.fromkeys(problems))


def check(paths: list[Path], out_dir: Path) -> int:
    bad = 0
    for path in paths:
        out = Path(out_dir) / f"{path.stem}.ipynb"
        problems = notebook_errors(out) if out.exists() else ["not executed (no output)"]
        for problem in problems:
            print(f"{out}: {problem}", file=sys.stderr)
        bad += bool(problems)
    if bad:
        print(f"{bad} chapter(s) are missing or failed; not rendering them", file=sys.stderr)
        return 1
    print(f"{len(paths)} chapter(s) executed cleanly in {out_dir}")
    return 0


# ---------------------------------------------------------------------------------------------
# running


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run_one(path: Path, out: Path, params: list[list[str]], quick: bool, threads: int) -> tuple[float, str]:
    """Execute one chapter in a child process with ``threads`` torch/BLAS threads; (seconds, error)."""
    cmd = [sys.executable, __file__, path.stem, "--jobs", "1", "--out", str(out),
           "--notebooks", str(path.parent)]
    cmd += ["--quick"] if quick else []
    for name, value in params:
        cmd += ["-p", name, value]
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES}, PROBELIB_LADDERS_PREPARED="1")
    t = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    error = "" if proc.returncode == 0 else (proc.stdout + proc.stderr)[-4000:] or f"exit code {proc.returncode}"
    return time.time() - t, error


PREPARE = """import time, torch
torch.set_num_threads({threads})
from probelib.zoo import build_encoder, demo_ladder
t = time.time()
for spec in demo_ladder({base!r}):
    build_encoder(spec, progress=False)
print(f"{base}: adversarial ladder ready in {{time.time() - t:.0f}} s", flush=True)
"""


def prepare_ladders(paths: list[Path], given: list, jobs: int) -> None:
    """Train the demo's adversarial ladders (or find them in the cache) before the chapters run,
    one network per child process, so that chapters running side by side never train the same
    network twice. Skipped in quick mode, for another dataset, or when no chapter uses them."""
    if os.environ.get("PROBELIB_LADDERS_PREPARED") or any(
            k == "quick" and str(v).lower() in ("1", "true", "yes") for k, v in given):
        return
    if any(k == "dataset" and str(v) != "demo" for k, v in given):
        return
    if not any(("demo_ladder" in p.read_text() or "DEMO_ROBUST" in p.read_text()) for p in paths):
        return
    from probelib.zoo import DEMO_TRAINED

    bases = list(DEMO_TRAINED)
    jobs = max(1, min(jobs, len(bases)))
    threads = max(1, _cores() // jobs)
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES})
    t = time.time()
    procs = [subprocess.Popen([sys.executable, "-c", PREPARE.format(base=b, threads=threads)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for b in bases[:jobs]]
    pending = bases[jobs:]
    while procs:
        proc = procs.pop(0)
        out, _ = proc.communicate()
        print(out.strip()[-2000:], flush=True)
        if pending:
            procs.append(subprocess.Popen([sys.executable, "-c", PREPARE.format(base=pending.pop(0), threads=threads)],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    print(f"adversarial ladders: {time.time() - t:.1f} s", flush=True)


def _report_failure(path: Path, out_dir: Path, exc: BaseException) -> None:
    import traceback

    print(f"{path.stem}: FAILED: {type(exc).__name__}", file=sys.stderr)
    # papermill's error already holds the failing cell's traceback; anything else gets its own
    papermill_error = type(exc).__name__ == "PapermillExecutionError"
    lines = traceback.format_exception_only(exc) if papermill_error else traceback.format_exception(exc)
    print("".join(lines)[-4000:], file=sys.stderr, flush=True)
    if not getattr(exc, "__notes__", None):  # execute() notes where the failed notebook is kept
        print(f"{path.stem}: no notebook was written; {Path(out_dir) / (path.stem + '.ipynb')} "
              "was left as it was", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="chapter prefixes (default: all)")
    ap.add_argument("--quick", action="store_true", help="small parameters (tests)")
    ap.add_argument("--out", type=Path, default=ROOT / "book" / "generated")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="where the chapter .py files are")
    ap.add_argument("--jobs", type=int, default=min(_cores(), MAX_DEFAULT_JOBS),
                    help=f"chapters executed at once (default: CPU cores, at most {MAX_DEFAULT_JOBS})")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--check", action="store_true",
                    help="execute nothing; exit 1 if a chapter's output in --out is missing or failed")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    paths = chapters(args.chapters, args.notebooks)
    if args.check:
        return check(paths, args.out)

    given = [(k, v) for k, v in args.p]
    if args.quick and "quick" not in {k for k, _ in given}:
        given.append(("quick", True))
    try:
        resolved = resolve_parameters(paths, given)
    except ParameterError as exc:
        print(f"{Path(__file__).name}: error: {exc}", file=sys.stderr)
        return 2

    total = time.time()
    prepare_ladders(paths, given, args.jobs)
    if args.jobs == 1 or len(paths) == 1:
        failed = []
        for path in paths:
            t = time.time()
            try:
                execute(path, args.out, resolved[path])
            except Exception as exc:
                failed.append(path.stem)
                _report_failure(path, args.out, exc)
                print(f"{path.stem}: {time.time() - t:.1f} s  FAILED", flush=True)
                continue
            print(f"{path.stem}: {time.time() - t:.1f} s", flush=True)
        print(f"all chapters: {time.time() - total:.1f} s")
        write_findings_page(args.out)
        if failed:
            print(f"failed chapters: {failed}", file=sys.stderr)
            return 1
        return 0

    # longest first (timings of the last run with the same --quick), so no core idles at the end
    timings_file = args.out / (".timings-quick.json" if args.quick else ".timings.json")
    try:
        last = json.loads(timings_file.read_text())
    except (OSError, ValueError):
        last = {}
    paths.sort(key=lambda p: (-last.get(p.stem, 0.0), -int(p.stem[:2])))
    jobs = min(args.jobs, len(paths))
    threads = max(1, _cores() // jobs)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # a limit set by the user stays a limit
        threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
    print(f"{len(paths)} chapters, {jobs} at a time, {threads} thread(s) each", flush=True)
    failed = []
    with ThreadPoolExecutor(jobs) as pool:
        # each child gets the parameters its chapter declares (already checked above)
        futures = {p: pool.submit(_run_one, p, args.out, [(k, v) for k, v in args.p if k in resolved[p]],
                                  args.quick and "quick" in resolved[p], threads) for p in paths}
        for path, future in futures.items():
            seconds, error = future.result()
            last[path.stem] = round(seconds, 1)
            print(f"{path.stem}: {seconds:.1f} s{'  FAILED' if error else ''}", flush=True)
            if error:
                failed.append(path.stem)
                print(error, file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    timings_file.write_text(json.dumps(last, indent=1, sort_keys=True))
    print(f"all chapters: {time.time() - total:.1f} s")
    write_findings_page(args.out)
    if failed:
        print(f"failed chapters: {failed}", file=sys.stderr)
        return 1
    return 0


def write_findings_page(out: Path) -> Path:
    """``<out>/findings.md``: the findings table of every chapter's records in ``<out>/findings``
    (the book page "Findings at a glance"; claims that no chapter recorded say so)."""
    from probelib import findings

    page = findings.write_page(Path(out) / "findings.md", Path(out).resolve() / "findings")
    print(f"findings table: {page}", flush=True)
    return page


if __name__ == "__main__":
    sys.exit(main())
