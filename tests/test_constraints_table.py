"""bench/constraints_table.py's choice of gpm's threshold reads validation scores only (runs replaced by a
stand-in whose validation and test rankings of the thresholds disagree)."""

from pathlib import Path

from bench import constraints_table


def test_gpm_threshold_is_selected_on_validation_not_test(monkeypatch, tmp_path):
    seen = []

    def fake_run(overrides, folder: Path):
        t = float(next(o for o in overrides if o.startswith("method.threshold=")).split("=")[1])
        seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
        seen.append(overrides)
        val = {0.5: 0.90, 0.9: 0.95, 0.97: 0.80}[t] + 0.01 * seed  # validation prefers 0.9
        return {"val_metrics": {"avg_acc": val}, "metrics": {"avg_acc": 1.0 - val}}  # test would prefer 0.97

    monkeypatch.setattr(constraints_table, "run", fake_run)
    chosen, lines = constraints_table.select_gpm_threshold([0.5, 0.9, 0.97], [0, 1], False, tmp_path, lambda m: None)
    assert chosen == {name: 0.9 for name in constraints_table.SETTINGS}
    assert all("train.val_fraction=0.1" in o for o in seen) and len(seen) == 3 * 2 * len(constraints_table.SETTINGS)
    assert any("| task-IL |" in line and line.endswith("| 0.9 |") for line in lines)


def test_optimizer_table_runs_each_method_under_adam_and_sgd_on_the_same_stream(monkeypatch, capsys):
    """bench/constraints_optimizers.py: every cell of a method is the same stream and seeds under each
    optimizer (only the optimizer's overrides differ), gpm at the given threshold; one row per method and
    optimizer, one column per scenario."""
    from bench import constraints_optimizers as co

    seen = []

    def fake_run(overrides, folder: Path):
        seen.append(overrides)
        return {"metrics": {"avg_acc": 0.5, "forgetting": 0.25}}

    monkeypatch.setattr(co, "run", fake_run)
    assert co.main(["--seeds", "0", "1", "--methods", "naive", "gpm", "--gpm-threshold", "0.8"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| method | optimizer | task-IL | domain-IL | class-IL |"
    assert [r.split(" | ")[:2] for r in rows[1:]] == [["| naive", "adam"], ["| naive", "sgd"], ["| gpm", "adam"],
                                                       ["| gpm", "sgd"]]
    assert "0.500 [0.500, 0.500] (0.250)" in rows[1]
    assert len(seen) == 2 * 2 * 3 * 2  # methods × optimizers × scenarios × seeds
    for overrides in seen:
        assert "train.reset_optimizer=true" in overrides and "scenario.outputs=all" in overrides
        assert ("method.threshold=0.8" in overrides) == ("method=gpm" in overrides)
    by_optimizer = {}
    for overrides in seen:
        rest = tuple(o for o in overrides if not o.startswith("optimizer") and not o.startswith("hydra"))
        by_optimizer.setdefault(rest, set()).add(next(o for o in overrides if o.startswith("optimizer=")))
    assert all(v == {"optimizer=adam", "optimizer=sgd"} for v in by_optimizer.values())


def test_optimizer_table_validation_reads_validation_scores_and_passes_gpm_overrides(monkeypatch, capsys):
    """--validation: the runs hold out train.val_fraction=0.2 and the table reads `val_metrics` only;
    --gpm-override reaches gpm's runs and no other method's."""
    from bench import constraints_optimizers as co

    seen = []

    def fake_run(overrides, folder: Path):
        seen.append(overrides)
        return {"metrics": {"avg_acc": 0.1, "forgetting": 0.9}, "val_metrics": {"avg_acc": 0.7, "forgetting": 0.2}}

    monkeypatch.setattr(co, "run", fake_run)
    assert co.main(["--seeds", "0", "--methods", "naive", "gpm", "--optimizers", "adam", "--scenarios", "class",
                    "--validation", "--gpm-override", "method.hidden_threshold=0.95"]) == 0
    out = capsys.readouterr().out
    assert "0.700 [0.700] (0.200)" in out and "0.100" not in out
    assert len(seen) == 2
    for overrides in seen:
        assert "train.val_fraction=0.2" in overrides and "train.val_fraction=0" not in overrides
        assert ("method.hidden_threshold=0.95" in overrides) == ("method=gpm" in overrides)
