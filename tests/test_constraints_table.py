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
