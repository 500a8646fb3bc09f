"""probelib.findings: verdict rules, records per chapter, the table."""
import json

import numpy as np
import pytest

from probelib import findings


def test_paired_directions():
    rng = np.random.default_rng(0)
    y = rng.normal(1, 0.1, 24)
    v = findings.paired(y - 0.5, y, expect="less")
    assert v.verdict == "reproduced" and v.p < 0.05 and v.n == 24
    assert v.value == pytest.approx(-0.5) and v.ci[0] <= -0.5 <= v.ci[1]
    assert findings.paired(y + 0.5, y, expect="less").verdict == "opposite"
    noise = rng.normal(0, 1, 24)
    assert findings.paired(y + 0.01 * noise, y, expect="less").verdict in ("not reproduced", "reproduced", "opposite")
    assert findings.paired(y, y, expect="less").verdict == "not reproduced"
    assert "Wilcoxon" in v.rule and "REPRODUCED" in v.sentence


def test_paired_rejects_bad_input():
    with pytest.raises(ValueError):
        findings.paired([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        findings.paired([1, 2], [1, 2], expect="up")
    assert findings.paired([1.0], [2.0]).verdict == "not tested"


def test_trend_monotone_and_partial():
    rng = np.random.default_rng(1)
    base = rng.normal(1, 0.05, 20)
    falling = np.stack([base, base * 0.8, base * 0.6, base * 0.3])
    v = findings.trend([0, 4, 8, 16], falling, expect="less")
    assert v.verdict == "reproduced" and v.value == pytest.approx(0.3, rel=1e-6)
    bumpy = np.stack([base, base * 1.2, base * 0.6, base * 0.3])
    assert findings.trend([0, 4, 8, 16], bumpy).verdict == "partly reproduced"
    assert findings.trend([0, 16], np.stack([base, base * 1.5])).verdict == "opposite"
    # the order of levels, not of rows, defines the ladder
    assert findings.trend([16, 0], np.stack([base * 0.3, base])).verdict == "reproduced"
    with pytest.raises(ValueError):
        findings.trend([0, 1], falling)


def test_one_sample_and_compare_values():
    x = np.linspace(0.2, 0.4, 12)
    assert findings.one_sample(x, "greater", 0.0).verdict == "reproduced"
    assert findings.one_sample(x, "less", 0.0).verdict == "opposite"
    assert findings.compare_values(0.9, 0.5, ci=(0.8, 0.95)).verdict == "reproduced"
    assert findings.compare_values(0.6, 0.5, ci=(0.3, 0.8)).verdict == "partly reproduced"
    assert findings.compare_values(0.2, 0.5).verdict == "not reproduced"
    assert findings.compare_values(float("nan"), 0.5).verdict == "not tested"
    lo, hi = findings.pearson_ci(0.9, 50)
    assert lo < 0.9 < hi
    with pytest.raises(ValueError):
        findings.Verdict("maybe", 0.0, None, "")


def test_record_table_and_page(tmp_path):
    v = findings.paired([0.1, 0.2, 0.3, 0.2, 0.1, 0.25], [1, 1, 1, 1, 1, 1])
    findings.record("04", "P1-4B", v, demo="relative sensitivity", directory=tmp_path)
    findings.record("04", "P1-4B", v, demo="replaced", directory=tmp_path)  # one record per claim
    findings.record("07", "P2-new", findings.compare_values(2.0, 1.0), demo="x",
                    paper_reports="something new", directory=tmp_path)
    rows = json.loads((tmp_path / "04.json").read_text())
    assert len(rows) == 1 and rows[0]["demo"] == "replaced" and rows[0]["verdict"] == "reproduced"
    df = findings.table(tmp_path)
    assert set(findings.CLAIMS) <= set(df.claim)
    assert (df.set_index("claim").loc["P1-4C", "verdict"]) == "not recorded"
    assert list(df.claim).index("P1-4B") < list(df.claim).index("P2-fragile")
    md = findings.render_markdown(tmp_path)
    assert "| P1-4B |" in md and "**reproduced**" in md and "Paper 2" in md
    page = findings.write_page(tmp_path / "page" / "findings.md", tmp_path)
    assert page.read_text().startswith("# Findings at a glance")
    with pytest.raises(KeyError):
        findings.record("04", "unknown-claim", v, demo="x", directory=tmp_path)


def test_findings_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELIB_FINDINGS", str(tmp_path / "f"))
    assert findings.findings_dir() == tmp_path / "f"
    findings.record("10", "P2-brain-axes", findings.compare_values(1.0, 0.0), demo="x")
    assert (tmp_path / "f" / "10.json").is_file()


def test_empty_table(tmp_path):
    df = findings.table(tmp_path / "none")
    assert (df.verdict == "not recorded").all() and len(df) == len(findings.CLAIMS)
    assert "not recorded" in findings.render_markdown(tmp_path / "none")


def test_correlation_difference_and_variants(tmp_path):
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(40, 2))
    good = obs + 0.3 * rng.normal(size=obs.shape)
    bad = obs + 3 * rng.normal(size=obs.shape)
    v = findings.correlation_difference(bad, good, obs, expect="less")
    assert v.verdict == "reproduced" and v.value < 0 and v.ci[1] < 0
    assert findings.correlation_difference(good, bad, obs, expect="less").verdict == "opposite"
    findings.record("04", "P1-4C", v, demo="r", variant="mobilenet_v2", directory=tmp_path)
    findings.record("04", "P1-4C", v, demo="r", variant="efficientnet_lite0", directory=tmp_path)
    df = findings.table(tmp_path)
    assert (df.claim == "P1-4C").sum() == 2
    assert "mobilenet_v2: r" in findings.render_markdown(tmp_path)


def test_paired_t_for_few_replicates():
    x, y = np.array([0.5, 0.6, 0.55, 0.7]), np.array([0.1, 0.2, 0.15, 0.1])
    assert findings.paired(x, y, expect="greater").verdict == "not reproduced"  # 4 pairs: Wilcoxon p >= 1/16
    v = findings.paired(x, y, expect="greater", test="t", over="regions")
    assert v.verdict == "reproduced" and v.p < 0.05 and "t test over regions" in v.rule
    assert findings.paired(y, x, expect="greater", test="t").verdict == "opposite"
    with pytest.raises(ValueError):
        findings.paired(x, y, test="sign")


def test_differ_is_two_sided():
    rng = np.random.default_rng(3)
    y = rng.normal(1, 0.1, 20)
    assert findings.differ(y + 0.3, y).verdict == "reproduced"
    assert findings.differ(y - 0.3, y).verdict == "reproduced"
    assert findings.differ(y, y).verdict == "not reproduced"
    assert findings.differ([1.0], [2.0]).verdict == "not tested"
    assert "two-sided" in findings.differ(y + 0.3, y).rule


def test_no_correlation_difference():
    rng = np.random.default_rng(4)
    obs = rng.normal(size=(40, 2))
    good = obs + 0.3 * rng.normal(size=obs.shape)
    alike = obs + 0.3 * rng.normal(size=obs.shape)
    bad = obs + 3 * rng.normal(size=obs.shape)
    assert findings.no_correlation_difference(good, alike, obs, n_boot=300).verdict == "reproduced"
    v = findings.no_correlation_difference(good, bad, obs, n_boot=300)
    assert v.verdict == "not reproduced" and v.value > 0 and "includes 0" in v.rule


def test_combine():
    ok = findings.Verdict("reproduced", 1.0, (0.5, 1.5), "rule a")
    no = findings.Verdict("not reproduced", 0.1, None, "rule b")
    opp = findings.Verdict("opposite", -1.0, None, "rule c")
    nt = findings.Verdict("not tested", float("nan"), None, "rule d")
    both = findings.combine({"a": ok, "b": ok})
    assert both.verdict == "reproduced" and both.value == 1.0 and both.ci == (0.5, 1.5)
    assert "(a) rule a" in both.rule and "a: reproduced" in both.detail
    assert findings.combine({"a": ok, "b": no}).verdict == "partly reproduced"
    assert findings.combine({"a": no, "b": opp}).verdict == "not reproduced"
    assert findings.combine({"a": opp, "b": opp}).verdict == "opposite"
    assert findings.combine({"a": nt}).verdict == "not tested"
    assert findings.combine({"a": no, "b": ok}, value=2.0).value == 2.0
    with pytest.raises(ValueError):
        findings.combine({})


def test_trend_names_its_levels():
    base = np.random.default_rng(5).normal(1, 0.05, 12)
    v = findings.trend([1, 3, 8], np.stack([base, 2 * base, 3 * base]), expect="greater",
                       top="the largest budget", base="the smallest budget's", step="budget")
    assert v.verdict == "reproduced" and "the largest budget is above the smallest budget's" in v.rule
    assert "every budget" in v.rule and v.detail.startswith("last / first level")
    assert "standard network" in findings.trend([0, 4], np.stack([base, base / 2])).rule
