"""What a run prints: clexp's lines and the progress bar, an aligned table, no library chatter."""

import pytest

from clexp.results import format_table
from tests.conftest import clexp_cli


def test_accuracy_table_headers_end_where_their_columns_end():
    R = [[1.0, 0.5, 0.0], [0.25, 1.0, 0.125]]
    text = format_table({"acc_matrix": R, "baseline_acc": [0.5, 0.0, 0.0],
                         "metrics": {"avg_acc": 0.6, "forgetting": 0.7, "bwt": -0.7, "fwt": 0.0}})
    lines = text.splitlines()
    header, rows = lines[1], lines[2:5]
    for j in range(3):
        end = header.index(f"exp{j}") + len(f"exp{j}")
        for row in rows:
            assert row[end - 1].isdigit() and (end == len(row) or row[end] == " "), (j, row)


@pytest.mark.slow
def test_a_default_run_prints_no_library_chatter(tmp_path):
    out = clexp_cli(["train.epochs=1", "trainer.enable_progress_bar=false", "hydra.run.dir=run"], tmp_path,
                    env={"WANDB_API_KEY": ""})
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for chatter in ("anonymous setting", "FLOPs", "Matplotlib is building the font cache", "LeafSpec"):
        assert chatter not in text, chatter
    assert "parameters (" in out.stdout and "average accuracy" in out.stdout


def test_train_loss_reaches_the_logger_at_a_fixed_interval_in_every_experience(tmp_path):
    import csv

    from tests.conftest import run_stream

    run_stream(tmp_path, ["logger=csv", "train.epochs=3", "trainer.log_every_n_steps=5"])
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    steps = sorted({int(r["step"]) for r in rows if r.get("train/loss")})
    on_grid = [s for s in steps if (s + 1) % 5 == 0]
    assert len(on_grid) >= len(steps) - 5  # all but (at most) each experience's last batch sit on the grid
    assert len(on_grid) >= 0.9 * (max(steps) + 1) / 5  # and no point of the grid is missing (± the ends)
    evals = [(int(r["step"]), int(r["experience"])) for r in rows if r.get("eval/acc_exp0")]
    assert [e for _, e in evals] == [0, 1, 2, 3, 4]  # one row per experience, none lost to a step collision
    assert [s for s, _ in evals] == sorted({s for s, _ in evals})  # at increasing stream steps
