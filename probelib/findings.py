"""Findings at a glance: each chapter records its verdict on each paper claim; one table shows them.

A chapter states its verdict rule in prose *before* the result, then computes the verdict with one
of the rules below and records it::

    from probelib import findings
    v = findings.paired(robust_per_image, standard_per_image, expect="less")
    findings.record("04", "P1-4B", v, demo="relative sensitivity, top rung - standard network")
    print(v.sentence)

Each record goes to ``<findings dir>/<chapter>.json`` (claim id, the paper's value or direction,
the demo's value with its 95% confidence interval over images, the rule, the verdict);
:func:`table` and :func:`render_markdown` gather every chapter's records into one table, with a row
for each claim of :data:`CLAIMS` (claims that no chapter recorded say so). The findings directory is
``$PROBELIB_FINDINGS`` if set (``scripts/execute_notebooks.py`` sets it to ``<out>/findings``),
else ``<repository>/book/generated/findings`` in a checkout, else ``./findings``.

Verdicts: ``reproduced`` (the rule's test passes in the paper's direction), ``opposite`` (the same
test passes in the other direction), ``not reproduced`` (neither), ``partly reproduced`` (rules
with two conditions, one met), ``not tested`` (no data for the test, e.g. a single model).
These are verdicts about the demo's stand-ins, never the papers' results.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "opposite", "not tested")
ALPHA = 0.05

#: Every claim of the two papers that the book tests: id -> (paper, what the paper reports, chapter).
CLAIMS: dict[str, tuple[str, str, str]] = {
    "P1-1CD": ("2024", "imperceptible perturbations (eps <= 3/255) change encoding-model predictions a lot", "03"),
    "P1-2B": ("2024", "predicted vs observed responses correlate (EBA example, R = .76)", "02"),
    "P1-2C": ("2024", "all 8 CNNs predict close to the noise ceiling, with similar accuracy", "02"),
    "P1-3A": ("2024", "targeted noise changes the prediction far more than shuffled noise of the same size", "03"),
    "P1-3B": ("2024", "sensitivity grows with eps; large changes already at eps <= 3/255", "03"),
    "P1-3C": ("2024", "sensitivity differs between models that predict equally well", "03"),
    "P1-3D": ("2024", "sparseness and normalised variance across models are higher for sensitivity than predictivity", "03"),
    "P1-4B": ("2024", "sensitivity falls as the adversarial-training budget grows", "04"),
    "P1-4C": ("2024", "predictivity falls as the adversarial-training budget grows", "04"),
    "P1-T1": ("2024", "the readout changes sensitivity; L1-regularised readouts are least sensitive", "05"),
    "P1-5B": ("2024", "sparse readouts tend to lower sensitivity across models", "05"),
    "P1-8/255": ("2024", "perturbations become detectable around eps = 8/255 (cited estimate)", "03"),
    "P2-fragile": ("2025", "standard models are very sensitive to small L2 probes (eps = 5)", "06"),
    "P2-robust-less": ("2025", "robust models are much less sensitive than standard ones", "06"),
    "P2-discrim": ("2025", "sensitivity discriminates between models better than predictivity", "06"),
    "P2-linf-l2": ("2025", "voxel-wise L-inf and L2 sensitivities correlate (R = .97)", "06"),
    "P2-transfer-std": ("2025", "probes of standard models barely transfer to other models", "07"),
    "P2-fe-budget": ("2025", "robust models need much larger probes for a fixed effect", "07"),
    "P2-fe-transfer": ("2025", "fixed-effect probes of robust models transfer to other models", "07"),
    "P2-subspace": ("2025", "robust models share perturbation subspaces; standard models do not", "08"),
    "P2-semantic": ("2025", "robust models' probes are semantically meaningful (add or remove category features)", "09"),
    "P2-brain-axes": ("2025", "robust models' local coding axes are closer to the brain's", "10"),
}


@dataclass
class Verdict:
    """The outcome of a verdict rule: the demo's value (with a 95% CI over images), the rule as
    written in the chapter, and the verdict it gives."""

    verdict: str
    value: float
    ci: tuple[float, float] | None
    rule: str
    p: float | None = None
    n: int | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}")

    @property
    def sentence(self) -> str:
        """One line: value, CI, test and verdict (for the chapter's printed output)."""
        ci = f" [95% CI {self.ci[0]:.3g}, {self.ci[1]:.3g}]" if self.ci is not None else ""
        p = f", p = {self.p:.2g}" if self.p is not None else ""
        n = f", n = {self.n}" if self.n is not None else ""
        detail = f"; {self.detail}" if self.detail else ""
        return f"{self.verdict.upper()}: {self.value:.3g}{ci}{p}{n}{detail}"


def mean_ci(values, level: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """Mean of ``values`` (NaNs dropped) and its t-based confidence interval (None if n < 2)."""
    from scipy import stats

    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, None
    m = float(x.mean())
    if len(x) < 2:
        return m, None
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, (m - half, m + half)


def _one_sided_p(d: np.ndarray, greater: bool) -> float:
    """One-sided p of a Wilcoxon signed-rank test that ``d`` is > 0 (``greater``) or < 0."""
    from scipy import stats

    if len(d) < 2 or np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, alternative="greater" if greater else "less").pvalue)


def _one_sided_t(d: np.ndarray, greater: bool) -> float:
    """One-sided p of a one-sample t test that ``d`` is > 0 (``greater``) or < 0."""
    from scipy import stats

    if len(d) < 2 or np.all(d == d[0]):
        return 1.0 if len(d) < 2 or d[0] == 0 or (d[0] > 0) != greater else 0.0
    return float(stats.ttest_1samp(d, 0.0, alternative="greater" if greater else "less").pvalue)


def paired(x, y, expect: str = "less", alpha: float = ALPHA, what: str = "x - y",
           test: str = "wilcoxon", over: str = "images") -> Verdict:
    """Rule "reproduced: x < y (``expect="less"``) or x > y, one-sided paired Wilcoxon signed-rank
    test over images p < alpha; opposite: the same test in the other direction p < alpha; else not
    reproduced". ``x``, ``y``: one value per image (paired). The value is the mean of x - y.
    ``test="t"``: a paired t test instead (for a handful of replicates, where the signed-rank test
    cannot reach p < alpha); ``over``: what the pairs are (named in the rule)."""
    if expect not in ("less", "greater"):
        raise ValueError("expect must be 'less' or 'greater'")
    if test not in ("wilcoxon", "t"):
        raise ValueError("test must be 'wilcoxon' or 't'")
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values need the same shape; got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    sign = "<" if expect == "less" else ">"
    name = "Wilcoxon signed-rank test" if test == "wilcoxon" else "t test"
    rule = (f"reproduced if {what} {sign} 0 by a one-sided paired {name} over {over} "
            f"(p < {alpha:g}); opposite if significant the other way; else not reproduced")
    m, ci = mean_ci(d)
    if len(d) < 2:
        return Verdict("not tested", m, ci, rule, None, len(d), "fewer than 2 paired values")
    one_sided = _one_sided_p if test == "wilcoxon" else _one_sided_t
    p = one_sided(d, greater=expect == "greater")
    p_other = one_sided(d, greater=expect != "greater")
    verdict = "reproduced" if p < alpha else "opposite" if p_other < alpha else "not reproduced"
    return Verdict(verdict, m, ci, rule, p if verdict != "opposite" else p_other, len(d))


def one_sample(values, expect: str = "greater", threshold: float = 0.0, alpha: float = ALPHA,
               what: str = "value") -> Verdict:
    """Rule "reproduced: the per-image ``values`` are above (``expect="greater"``) or below
    ``threshold``, one-sided Wilcoxon signed-rank test over images p < alpha; opposite: significant
    the other way; else not reproduced". The value is the mean of ``values``."""
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    out = paired(v, np.full_like(v, threshold), expect="greater" if expect == "greater" else "less",
                 alpha=alpha, what=f"{what} - {threshold:g}")
    m, ci = mean_ci(v)
    return Verdict(out.verdict, m, ci, out.rule, out.p, out.n, out.detail)


def trend(levels: Sequence[float], per_image, expect: str = "less", alpha: float = ALPHA,
          what: str = "the value", top: str = "the top rung", base: str = "the standard network's",
          step: str = "rung") -> Verdict:
    """Rule for a ladder: "reproduced if the top rung's per-image values are below (``expect="less"``)
    or above the first rung's (one-sided paired Wilcoxon over images, p < alpha) and the mean changes
    in that direction at every rung; partly reproduced if only the paired test passes; opposite if
    the paired test passes the other way; else not reproduced".

    ``per_image``: (rungs, images), rows in the order of ``levels``. The value is the ratio of the
    top rung's mean to the first rung's (its CI: that of the mean paired difference, divided by the
    first rung's mean). ``top``, ``base``, ``step``: how the rule names the last level, the first
    level and a level (e.g. "the largest budget", "the smallest budget's", "budget")."""
    a = np.asarray(per_image, float)
    if a.ndim != 2 or a.shape[0] != len(levels):
        raise ValueError("per_image must be (len(levels), images)")
    order = np.argsort(np.asarray(levels, float), kind="stable")
    a = a[order]
    base_mean = float(np.nanmean(a[0]))
    sign = "below" if expect == "less" else "above"
    rule = (f"reproduced if {what} at {top} is {sign} {base} (one-sided paired "
            f"Wilcoxon signed-rank test over images, p < {alpha:g}) and its mean moves that way at every "
            f"{step}; partly reproduced if only the test passes; opposite if the test passes the other "
            f"way; else not reproduced")
    if a.shape[0] < 2:
        return Verdict("not tested", math.nan, None, rule, None, a.shape[1], "a ladder of one rung")
    test = paired(a[-1], a[0], expect=expect, alpha=alpha)
    means = np.nanmean(a, axis=1)
    steps = np.diff(means)
    monotone = bool(np.all(steps < 0) if expect == "less" else np.all(steps > 0))
    if test.verdict == "reproduced":
        verdict = "reproduced" if monotone else "partly reproduced"
    else:
        verdict = test.verdict
    ratio = float(means[-1] / base_mean) if base_mean else math.nan
    ci = (1 + test.ci[0] / base_mean, 1 + test.ci[1] / base_mean) if test.ci is not None and base_mean else None
    detail = (("top / standard" if base == "the standard network's" else "last / first level") + "; means "
              + ", ".join(f"{m:.3g}" for m in means)
              + ("; monotone" if monotone else "; not monotone"))
    return Verdict(verdict, ratio, ci, rule, test.p, test.n, detail)


def compare_values(value: float, threshold: float, expect: str = "greater", ci=None,
                   what: str = "value") -> Verdict:
    """Rule "reproduced if ``value`` is above (``expect="greater"``) or below ``threshold`` and so is
    its whole CI (when given); partly reproduced if only the value is; else not reproduced" (for a
    single number without a per-image test, e.g. a correlation across voxels)."""
    sign = ">" if expect == "greater" else "<"
    rule = (f"reproduced if {what} {sign} {threshold:g} with its whole 95% CI; partly reproduced if only "
            f"the value is; else not reproduced")
    if value is None or not np.isfinite(value):
        return Verdict("not tested", math.nan, None, rule)
    beyond = (lambda v: v > threshold) if expect == "greater" else (lambda v: v < threshold)
    if beyond(value):
        verdict = "reproduced" if ci is None or (beyond(ci[0]) and beyond(ci[1])) else "partly reproduced"
    else:
        verdict = "not reproduced"
    return Verdict(verdict, float(value), None if ci is None else (float(ci[0]), float(ci[1])), rule)


def correlation_difference(pred_x, pred_y, observed, expect: str = "less", n_boot: int = 2000,
                           seed: int = 0, what: str = "r(x) - r(y)") -> Verdict:
    """Rule "reproduced if the held-out Pearson r of predictions ``pred_x`` minus that of ``pred_y``
    (mean over units) is below 0 (``expect="less"``) or above, with its whole 95% bootstrap CI over
    images (paired resampling of the held-out images); opposite if the whole CI lies on the other
    side; else not reproduced". Arrays (N_images, U) or (N_images,); p: the one-sided bootstrap
    fraction of resamples on the wrong side."""
    if expect not in ("less", "greater"):
        raise ValueError("expect must be 'less' or 'greater'")
    px, py, obs = (np.asarray(a, float).reshape(len(a), -1) for a in (pred_x, pred_y, observed))

    def stat(idx):
        def r(p):
            return np.nanmean([np.corrcoef(p[idx, u], obs[idx, u])[0, 1] for u in range(obs.shape[1])])
        return r(px) - r(py)

    sign = "<" if expect == "less" else ">"
    rule = (f"reproduced if {what} {sign} 0 with its whole 95% bootstrap CI over held-out images; "
            f"opposite if the whole CI lies on the other side; else not reproduced")
    n = len(obs)
    if n < 4:
        return Verdict("not tested", math.nan, None, rule, None, n, "fewer than 4 images")
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
        value = float(stat(np.arange(n)))
    boots = boots[np.isfinite(boots)]
    lo, hi = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
    below, above = hi < 0, lo > 0
    good, bad = (below, above) if expect == "less" else (above, below)
    verdict = "reproduced" if good else "opposite" if bad else "not reproduced"
    p = float(np.mean(boots >= 0) if expect == "less" else np.mean(boots <= 0))
    return Verdict(verdict, value, (lo, hi), rule, p, n)


def differ(x, y, alpha: float = ALPHA, what: str = "x - y", over: str = "images") -> Verdict:
    """Rule "reproduced if x and y differ, two-sided paired Wilcoxon signed-rank test over
    ``over`` p < alpha; else not reproduced" (for a claim of a difference of either sign). The
    value is the mean of x - y, with its 95% CI."""
    from scipy import stats

    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values need the same shape; got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    rule = (f"reproduced if {what} differs from 0 by a two-sided paired Wilcoxon signed-rank test over "
            f"{over} (p < {alpha:g}); else not reproduced")
    m, ci = mean_ci(d)
    if len(d) < 2:
        return Verdict("not tested", m, ci, rule, None, len(d), "fewer than 2 paired values")
    p = 1.0 if np.all(d == 0) else float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    return Verdict("reproduced" if p < alpha else "not reproduced", m, ci, rule, p, len(d))


def no_correlation_difference(pred_x, pred_y, observed, n_boot: int = 2000, seed: int = 0,
                              what: str = "r(x) - r(y)") -> Verdict:
    """Rule "reproduced if the 95% bootstrap CI over held-out images of the difference of held-out
    Pearson r (``pred_x`` minus ``pred_y``, mean over units) includes 0; else not reproduced" (for a
    claim that two models predict *alike*; a lack of evidence for a difference, not a proof of
    equivalence). Same statistic and bootstrap as :func:`correlation_difference`."""
    d = correlation_difference(pred_x, pred_y, observed, expect="less", n_boot=n_boot, seed=seed, what=what)
    rule = (f"reproduced if the 95% bootstrap CI over held-out images of {what} includes 0; "
            f"else not reproduced")
    if d.verdict == "not tested":
        return Verdict("not tested", d.value, d.ci, rule, None, d.n, d.detail)
    verdict = "reproduced" if d.ci is not None and d.ci[0] <= 0 <= d.ci[1] else "not reproduced"
    return Verdict(verdict, d.value, d.ci, rule, None, d.n)


def combine(conditions: dict, value=None, ci=None, detail: str = "") -> Verdict:
    """Rule "reproduced if every condition is reproduced; partly reproduced if some are; opposite if
    every condition is opposite; not tested if none could be tested; else not reproduced", for a
    claim with several parts. ``conditions``: name -> the :class:`Verdict` of one part. The value
    (and CI) default to the first condition's; ``detail`` lists each part's verdict."""
    if not conditions:
        raise ValueError("combine needs at least one condition")
    parts = list(conditions.values())
    rule = "all of: " + "; ".join(f"({name}) {v.rule}" for name, v in conditions.items())
    tested = [v for v in parts if v.verdict != "not tested"]
    n_ok = sum(v.verdict == "reproduced" for v in tested)
    if not tested:
        verdict = "not tested"
    elif n_ok == len(parts):
        verdict = "reproduced"
    elif n_ok or any(v.verdict == "partly reproduced" for v in tested):
        verdict = "partly reproduced"
    elif all(v.verdict == "opposite" for v in parts):
        verdict = "opposite"
    else:
        verdict = "not reproduced"
    first = parts[0]
    listing = "; ".join(f"{name}: {v.verdict}" for name, v in conditions.items())
    return Verdict(verdict, first.value if value is None else value, first.ci if value is None else ci,
                   rule, None, first.n, (detail + "; " if detail else "") + listing)


def pearson_ci(r: float, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Fisher-z confidence interval of a Pearson correlation over ``n`` pairs."""
    from scipy import stats

    if n < 4 or not np.isfinite(r):
        return None
    z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), stats.norm.ppf(0.5 + level / 2) / np.sqrt(n - 3)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


# ---------------------------------------------------------------------------------------------
# records


def findings_dir() -> Path:
    """Where the chapters' records go (see the module docstring); not created here."""
    env = os.environ.get("PROBELIB_FINDINGS")
    if env:
        return Path(env).expanduser()
    package = Path(__file__).resolve().parent
    root = package.parent
    installed = {"site-packages", "dist-packages"} & set(package.parts)
    if not installed and (root / "pyproject.toml").is_file():
        return root / "book" / "generated" / "findings"
    return Path.cwd() / "findings"


@dataclass
class Finding:
    """One row of the findings table."""

    chapter: str
    claim: str
    paper: str
    paper_reports: str
    demo: str
    verdict: str
    value: float | None
    ci: list[float] | None
    rule: str
    p: float | None = None
    n: int | None = None
    detail: str = ""
    stand_in: str = ""
    dataset: str = "demo"
    variant: str = ""
    extra: dict = field(default_factory=dict)


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _clean(x.item())
    return x


def record(chapter: str, claim: str, verdict: Verdict, demo: str, stand_in: str = "",
           dataset: str = "demo", paper_reports: str | None = None, directory=None,
           variant: str = "") -> Finding:
    """Add (or replace) the record of ``(claim, variant)`` in ``<directory>/<chapter>.json`` and
    return it. ``variant``: one of several tests of the same claim (e.g. one per network).

    ``claim``: an id of :data:`CLAIMS` (or a new id, then ``paper_reports`` is required);
    ``demo``: what the demo's value measures; ``stand_in``: which stand-ins replace the paper's
    models or data."""
    if claim in CLAIMS:
        paper, reports, _ = CLAIMS[claim]
    elif paper_reports is None:
        raise KeyError(f"unknown claim {claim!r}; known: {sorted(CLAIMS)} (or give paper_reports)")
    else:
        paper = "2024" if claim.startswith("P1") else "2025" if claim.startswith("P2") else ""
        reports = paper_reports
    if paper_reports is not None:
        reports = paper_reports
    f = Finding(chapter=str(chapter), claim=claim, paper=paper, paper_reports=reports, demo=demo,
                verdict=verdict.verdict, value=_clean(float(verdict.value)) if verdict.value is not None else None,
                ci=None if verdict.ci is None else [_clean(float(c)) for c in verdict.ci], rule=verdict.rule,
                p=_clean(verdict.p), n=_clean(verdict.n), detail=verdict.detail, stand_in=stand_in,
                dataset=dataset, variant=variant)
    folder = Path(directory) if directory is not None else findings_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    rows = load(path)
    rows = [r for r in rows if (r.claim, r.variant) != (claim, variant)] + [f]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{chapter}.", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump([asdict(r) for r in rows], fh, indent=1, default=_clean)
    os.replace(tmp, path)
    return f


def load(path) -> list[Finding]:
    """The records of one chapter file ([] if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [Finding(**r) for r in json.loads(path.read_text())]


def table(directory=None, all_claims: bool = True):
    """Every chapter's records as a DataFrame, one row per (claim, chapter), in the order of
    :data:`CLAIMS`; with ``all_claims`` a claim no chapter recorded gets a row "not recorded"."""
    import pandas as pd

    folder = Path(directory) if directory is not None else findings_dir()
    rows = [asdict(r) for p in sorted(folder.glob("*.json")) for r in load(p)] if folder.is_dir() else []
    df = pd.DataFrame(rows, columns=[f for f in Finding.__dataclass_fields__])
    if all_claims:
        missing = [c for c in CLAIMS if c not in set(df.claim)]
        extra = pd.DataFrame([{"chapter": CLAIMS[c][2], "claim": c, "paper": CLAIMS[c][0],
                               "paper_reports": CLAIMS[c][1], "demo": "", "verdict": "not recorded",
                               "value": None, "ci": None, "rule": "", "detail": "", "stand_in": "",
                               "dataset": "", "variant": ""} for c in missing], columns=df.columns)
        df = pd.concat([d for d in (df, extra) if len(d)], ignore_index=True) if len(extra) else df
    order = {c: i for i, c in enumerate(CLAIMS)}
    df["_order"] = [order.get(c, len(order)) for c in df.claim]
    return df.sort_values(["_order", "claim", "chapter", "variant"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _fmt(value, ci) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    out = f"{value:.3g}"
    if ci is not None and all(c is not None for c in ci):
        out += f" [{ci[0]:.3g}, {ci[1]:.3g}]"
    return out


def _escape_cell(text) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def render_markdown(directory=None) -> str:
    """The findings table as a Markdown (MyST) table, one section per paper."""
    df = table(directory)
    out = []
    for paper, title in (("2024", "Paper 1 (2024 workshop paper)"), ("2025", "Paper 2 (2025 paper)")):
        d = df[df.paper == paper]
        if not len(d):
            continue
        out += [f"## {title}", "",
                "| claim | the paper reports | chapter | the demo measures | demo value [95% CI] | rule | verdict |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for _, r in d.iterrows():
            p = f" (p = {r.p:.2g})" if isinstance(r.p, float) and math.isfinite(r.p) else ""
            out.append("| " + " | ".join(_escape_cell(c) for c in (
                r.claim, r.paper_reports, r.chapter,
                (f"{r.variant}: " if r.variant else "") + r.demo + (f"; {r.stand_in}" if r.stand_in else ""),
                _fmt(r.value, r.ci), r.rule, f"**{r.verdict}**{p}")) + " |")
        out.append("")
    counts = df.verdict.value_counts()
    out.append("Verdicts: " + ", ".join(f"{k} {int(v)}" for k, v in counts.items()) + ".")
    return "\n".join(out) + "\n"


PAGE_HEADER = """# Findings at a glance

Each row is one claim of the two papers and the verdict of the demo's chapter on it. The demo's
values come from the embedded demo (169 photographs, a simulated observer, small stand-in models),
**not** from the papers' data: a verdict says whether the demo's stand-ins show the paper's effect,
under the rule written in the chapter before its result (the rule column). Values are means with
95% confidence intervals over the probed images unless the column says otherwise. The table is
generated from the executed chapters (`probelib.findings`); nothing in it is typed by hand. A claim
marked "not recorded" was not tested by the chapters that ran.

"""


def write_page(path, directory=None) -> Path:
    """Write the book page (a MyST Markdown file) with the findings table to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PAGE_HEADER + render_markdown(directory))
    return path


__all__ = ["CLAIMS", "Finding", "VERDICTS", "Verdict", "combine", "compare_values", "correlation_difference", "differ",
           "findings_dir", "load", "mean_ci", "no_correlation_difference", "one_sample", "paired", "pearson_ci", "record", "render_markdown", "table", "trend", "write_page"]
