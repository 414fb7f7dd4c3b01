"""clexp-report's statistics in its files: intervals in summary.csv / selected.csv, the paired table,
the selection-stability warning, seeds needed, aggregates across scenarios, and a report.html of bounded
size; the job records keep only what the report reads (tiny synthetic sweep folders, no training)."""

import csv

import numpy as np
import pytest
import yaml

from clexp.review import report_html, stats
from clexp.review.records import collect, read_choices, read_overrides
from clexp.review.report import main
from tests.test_selection import fake_job

NAIVE = [0.50, 0.60, 0.55]
EWC = [0.52, 0.61, 0.54]  # seed by seed: +2, +1, −1 points


def rows(path):
    return list(csv.DictReader(open(path)))


def small_sweep(root, incremental="task", start=0):
    job = start
    for seed, (n, e) in enumerate(zip(NAIVE, EWC)):
        fake_job(root / str(job), "naive", None, seed, n, n, incremental=incremental)
        fake_job(root / str(job + 1), "ewc", 10.0, seed, e, e, incremental=incremental)
        job += 2
    return job


def test_intervals_and_the_paired_table_in_the_files(tmp_path, capsys):
    small_sweep(tmp_path)
    assert main([str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    summary = {r["method"]: r for r in rows(tmp_path / "summary.csv")}
    lo, hi = stats.t_interval(np.array(EWC))
    assert summary["ewc"]["interval"] == "t"
    ewc = summary["ewc"]
    assert (float(ewc["avg_acc_ci95_lo"]), float(ewc["avg_acc_ci95_hi"])) == pytest.approx((lo, hi))
    selected = {r["method"]: r for r in rows(tmp_path / "selected.csv")}
    assert float(selected["ewc"]["test_avg_acc_ci95_lo"]) == pytest.approx(lo)
    paired = [r for r in rows(tmp_path / "paired.csv") if r["method"] == "ewc" and r["against"] == "naive"]
    acc = next(r for r in paired if r["metric"] == "avg_acc")
    d = np.array(EWC) - np.array(NAIVE)
    assert float(acc["diff_mean"]) == pytest.approx(d.mean()) and acc["better"] == "2" and acc["n"] == "3"
    assert (float(acc["diff_ci95_lo"]), float(acc["diff_ci95_hi"])) == pytest.approx(stats.t_interval(d))
    assert acc["verdict"] == "not distinguishable"
    assert int(acc["seeds_for_observed"]) == stats.seeds_needed(d.mean(), d.std(ddof=1)) > 3
    assert "Paired comparisons" in out and "not distinguishable" in out
    assert "Seeds needed" in out and f"needs {acc['seeds_for_observed']} for 80% power" in out
    forgetting = next(r for r in paired if r["metric"] == "forgetting")  # equal forgetting: 0 of 3 better
    assert forgetting["better"] == "0" and float(forgetting["prob_improvement"]) == pytest.approx(0.5)
    assert "| Δ (points) [95 % interval] |" in (tmp_path / "paired.md").read_text()


def test_an_unstable_selection_is_warned_about(tmp_path, capsys):
    # λ = 1 and λ = 10 (neighbours) have overlapping validation scores over five seeds; λ = 100 is far off
    vals = {1.0: [0.80, 0.70, 0.90, 0.75, 0.85], 10.0: [0.82, 0.71, 0.88, 0.75, 0.86], 100.0: [0.3] * 5}
    job = 0
    for lam, scores in vals.items():
        for seed, v in enumerate(scores):
            fake_job(tmp_path / str(job), "ewc", lam, seed, 0.5, v)
            job += 1
    assert main([str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    (ewc,) = rows(tmp_path / "selected.csv")
    shares = stats.selection_shares(vals)
    assert float(ewc["strength"]) == 10.0 and ewc["unstable"] == "True"
    assert float(ewc["selected_share"]) == pytest.approx(shares[10.0])
    assert float(ewc["neighbour_share"]) == pytest.approx(shares[1.0] + shares[100.0])
    assert float(ewc["neighbour_share"]) > 1 / 3
    assert "WARNING: unstable selection for ewc" in out
    assert "WARNING: unstable selection" in (tmp_path / "selected.md").read_text()


def test_a_stable_selection_is_not_warned_about(tmp_path, capsys):
    for job, (lam, v) in enumerate((lam, v) for lam, v in ((1.0, 0.5), (10.0, 0.9)) for _ in range(3)):
        fake_job(tmp_path / str(job), "ewc", lam, job % 3, 0.5, v + 0.01 * (job % 3))
    assert main([str(tmp_path), "--no-plots"]) == 0
    assert "unstable" not in capsys.readouterr().out
    (ewc,) = rows(tmp_path / "selected.csv")
    assert ewc["unstable"] == "False" and float(ewc["selected_share"]) == 1.0


def test_aggregates_across_scenarios(tmp_path):
    job = small_sweep(tmp_path, "task")
    small_sweep(tmp_path, "domain", start=job)
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "aggregate.md").read_text()
    assert "IQM" in md and "| ewc | 2 of 2 | 6 |" in md
    iqm = stats.iqm(EWC + EWC)
    assert f"{100 * iqm:.1f} [" in md
    assert (tmp_path / "profiles.png").read_bytes().startswith(b"\x89PNG")
    html = (tmp_path / "report.html").read_text()
    assert 'alt="profiles"' in html and "Across scenarios" in html


def test_report_html_stays_bounded(tmp_path, monkeypatch):
    small_sweep(tmp_path)
    monkeypatch.setattr(report_html, "JOBS_SHOWN", 4)
    monkeypatch.setattr(report_html, "TABLE_ROWS", 1)
    assert main([str(tmp_path), "--no-plots"]) == 0
    html = (tmp_path / "report.html").read_text()
    assert html.count("<tr>") < 40
    assert "The first 4 of 6 jobs" in html and "jobs_table.csv" in html
    assert "The first 1 of 2 rows; all of them in <code>summary.csv</code>" in html
    assert len(rows(tmp_path / "jobs_table.csv")) == 6


def test_the_summary_marks_the_selected_strength_beside_the_validation_column(tmp_path):
    for job, (lam, test, val) in enumerate(((100.0, 0.70, 0.90), (1e4, 0.95, 0.60))):
        fake_job(tmp_path / str(job), "ewc", lam, 0, test, val)
    assert main([str(tmp_path), "--no-plots"]) == 0
    md = (tmp_path / "summary.md").read_text()
    lines = {line.split("|")[5].strip(): line for line in md.splitlines() if line.startswith("| digits")}
    assert "✓ (val)" in lines["100"] and "✓" not in lines["10000"]  # best on test is 1e4, selected is 100
    assert "| 90.0 | 70.0 |" in lines["100"]


def test_records_keep_what_the_report_reads_not_the_config(tmp_path):
    fake_job(tmp_path / "0", "ewc", 10.0, 0, 0.5, 0.6)
    (tmp_path / "0" / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  run:\n    dir: x\n  runtime:\n    version: 1.3.8\n    choices:\n      optimizer: adam\n"
        "      hydra/launcher: basic\n    output_dir: y\n  verbose: false\n")
    (record,) = collect([tmp_path])
    assert "config" not in record and record["choices"] == {"optimizer": "adam", "hydra/launcher": "basic"}
    assert record["values"]["method.lam"] == (True, 10.0)  # the config at the overridden keys only
    assert collect([tmp_path], keep_config=True)[0]["config"]["method"]["lam"] == 10.0
    odd = tmp_path / "odd.yaml"  # not where Hydra writes the block: the whole file is read
    odd.write_text("hydra:\n  runtime: {choices: {model: mlp}}\n")
    assert read_choices(odd) == {"model": "mlp"}


def test_overrides_read_as_yaml_reads_them(tmp_path):
    """Plain lines are taken as they are, anything YAML would read differently goes through YAML."""
    (tmp_path / ".hydra").mkdir()
    cases = [["method=ewc", "method.lam=1e4", "+x=1", "~y", "model.hidden=[32]", "opt=a,b"],
             ["a='b c'", "k=v: w", "name=x #c", "p=${oc.env:X}", "x=a:b"]]
    for lines in cases:
        text = "".join(f"- {line}\n" for line in lines)
        (tmp_path / ".hydra" / "overrides.yaml").write_text(text)
        assert read_overrides(tmp_path) == [str(o) for o in yaml.safe_load(text)]
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["a=it's", "b: c=1"]))
    assert read_overrides(tmp_path) == ["a=it's", "b: c=1"]


def test_strength_figure_marks_the_selected_strength_and_draws_the_interval(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from clexp.review import report
    vals = {1.0: (0.6, 0.62, 0.61), 10.0: (0.8, 0.81, 0.79)}  # λ = 10 is selected on validation
    tests = {1.0: (0.70, 0.75, 0.72), 10.0: (0.50, 0.56, 0.53)}  # ... though λ = 1 is better on test
    job = 0
    for lam in vals:
        for seed in range(3):
            fake_job(tmp_path / str(job), "ewc", lam, seed, tests[lam][seed], vals[lam][seed])
            job += 1
    records = collect([tmp_path])
    result = report.review(records)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    report.plot_strength(records, tmp_path / "s.png", result["keys"], result["rows"], result["selected"])
    ax = figures[0].axes[0]
    (star,) = [c for c in ax.collections if c.get_label() == "strength selected on validation"]
    assert star.get_offsets().tolist() == [[10.0, pytest.approx(100 * np.mean(tests[10.0]))]]
    bars = ax.containers[0].lines[2][0].get_segments()  # the error bars: the t interval over the seeds
    for (_, (lo, hi)), lam in zip((tuple(zip(*seg)) for seg in bars), (1.0, 10.0)):
        assert (lo, hi) == pytest.approx(tuple(100 * v for v in stats.t_interval(np.array(tests[lam]))))


def test_every_method_is_compared_with_naive_and_with_the_best(tmp_path):
    job = small_sweep(tmp_path)  # naive and ewc (the better on validation)
    for seed, v in enumerate((0.51, 0.58, 0.50)):
        fake_job(tmp_path / str(job + seed), "si", 1.0, seed, v, v)
    from clexp.review.comparisons import compare
    from clexp.review.selection import select

    pairs = {(r["method"], r["against"]) for r in compare(select(collect([tmp_path])))}
    assert pairs == {("ewc", "naive"), ("si", "naive"), ("si", "best: ewc")}
