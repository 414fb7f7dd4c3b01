"""What a run prints: clexp's lines and the progress bar, an aligned table, no library chatter."""

from pathlib import Path

import pytest

from clexp.core.results import format_table
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


def _files(folder):
    import os

    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


@pytest.mark.slow
def test_output_that_is_not_a_terminal_gets_one_line_per_epoch_and_train_log_the_story(tmp_path):
    """stdout is a pipe here (as under nohup, SLURM, CI): no bar redraws, one line per epoch; train.log has
    the start and every experience's accuracy row; nothing is written in the folder the run starts from."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    out = clexp_cli(["experiment=smoke", "scenario.n_experiences=2", "train.epochs=2",
                     "trainer.enable_progress_bar=true", "logger=none", "hydra.run.dir=../run"], work,
                    env={"HOME": str(home)}, clear=["XDG_CACHE_HOME", "MPLCONFIGDIR", "CLEXP_DATA_DIR"])
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout + out.stderr and "Training:" not in out.stdout
    epochs = [line for line in out.stdout.splitlines() if line.startswith("Experience ")]
    expected = [f"Experience {i}/2 · epoch {e}/2" for i in (1, 2) for e in (1, 2)]
    assert [line.split(":")[0] for line in epochs] == expected
    assert all("train/loss" in line for line in epochs)
    story = (tmp_path / "run" / "train.log").read_text()
    assert "start " in story.splitlines()[0]
    rows = [line for line in story.splitlines() if "[INFO] - after " in line]
    expected = [f"after {i} ({i + 1}/2 experiences)" for i in range(2)]
    assert [r.split(" - ", 1)[1].split(":")[0] for r in rows] == expected
    assert _files(work) == set()  # no ./data/.cache: caches go to the user's cache folder
    assert list((home / ".cache" / "clexp" / "matplotlib").iterdir())  # the plots' font cache


WARNER = """
import warnings

import pytorch_lightning as pl


class Warner(pl.Callback):
    def on_fit_start(self, trainer, pl_module):
        warnings.warn("a warning of the user's callback", UserWarning, stacklevel=1)
"""


@pytest.mark.slow
def test_train_log_holds_the_warnings_and_the_failure_line(tmp_path):
    """SI at c = 1e300 under SGD: the stiffness warning at experience 1, then NaN at its first step; a user's
    callback adds a Python warning (shown once, as Python does)."""
    import os

    (tmp_path / "warner.py").write_text(WARNER)
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(tmp_path)) if p)
    out = clexp_cli(["experiment=smoke", "scenario.n_experiences=2", "method=si", "method.c=1e300", "optimizer=sgd",
                     "logger=none", "plots=false", "+callbacks.warner._target_=warner.Warner", "hydra.run.dir=run"],
                    tmp_path, env={"PYTHONPATH": path})
    assert out.returncode == 3, out.stderr
    lines = (tmp_path / "run" / "train.log").read_text().splitlines()
    marks = {"start": "[INFO] - start ", "row": "[INFO] - after 0 ", "warning": "stiffer than SGD",
             "python": "[py.warnings][WARNING] - UserWarning: a warning of the user's callback (",
             "failure": "[ERROR] - failed: non-finite"}
    kinds = [next((k for k, mark in marks.items() if mark in s), None) for s in lines]
    assert [k for k in kinds if k] == ["start", "python", "row", "warning", "failure"], lines
    warning = next(s for s in out.stdout.splitlines() if "stiffer than SGD" in s)
    assert warning.startswith("WARNING [clexp] experience 1: ")  # a line of its own on the console
    assert "Use method.c < " in warning  # SI's strength by its own key (conf/method/si.yaml `strength: c`)
    assert "a warning of the user's callback" not in out.stderr  # logged (console: stdout), not printed raw


def test_a_log_record_is_written_on_a_line_of_its_own_above_a_live_bar():
    import io
    import logging

    from tqdm import tqdm

    from clexp.core.console import ConsoleFormatter, ConsoleHandler

    stream = io.StringIO()
    handler = ConsoleHandler(stream)
    handler.setFormatter(ConsoleFormatter("%(message)s"))
    with tqdm(total=10, desc="Experience 1/2", file=stream, mininterval=0) as bar:
        bar.update(3)
        handler.emit(logging.LogRecord("clexp", logging.WARNING, __file__, 1, "the penalty is stiff", None, None))
        bar.update(3)
    text = stream.getvalue()
    before, after = text.split("WARNING [clexp] the penalty is stiff", 1)
    assert "Experience 1/2" in before and before.endswith("\r")  # the bar's line is cleared first
    assert after.startswith("\n") and "Experience 1/2" in after  # and the bar drawn again below the line


def test_python_warnings_are_logged_as_one_line(caplog):
    import logging
    import warnings

    from clexp.core.console import capture_warnings

    with caplog.at_level(logging.WARNING, logger="py.warnings"), warnings.catch_warnings():
        capture_warnings()  # undone when catch_warnings restores warnings.showwarning
        warnings.simplefilter("always")
        warnings.warn("a data set has fewer classes than asked", UserWarning, stacklevel=1)
    [record] = [r for r in caplog.records if r.name == "py.warnings"]
    assert record.getMessage().startswith("UserWarning: a data set has fewer classes than asked (")
    assert "\n" not in record.getMessage()


def test_a_terminal_gets_a_bar_that_starts_as_the_experience_never_as_training(tmp_path, capsys):
    from tests.conftest import run_stream

    run_stream(tmp_path, ["trainer.enable_progress_bar=true", "callbacks.progress.style=bar",
                          "scenario.n_experiences=2", "train.epochs=1", "plots=false"])
    text = capsys.readouterr().out
    draws = [d for d in text.replace("\n", "\r").split("\r") if "it/s" in d]  # every drawing of a bar
    starts = ("Experience 1/2 · epoch 1/1", "Experience 2/2 · epoch 1/1")
    assert draws and all(d.startswith(starts) for d in draws), draws
    assert "Training" not in text and "v_num" not in text


def test_frozen_modules_in_eval_mode_are_not_warned_about(tmp_path):
    """LwF's teacher is a frozen copy in eval mode (as a pretrained backbone is): meant, not a mistake."""
    import warnings

    from tests.conftest import run_stream

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_stream(tmp_path, ["method=lwf", "scenario.n_experiences=2", "train.epochs=1", "plots=false"])
    assert not [w for w in caught if "eval mode" in str(w.message)]


def test_dataloader_workers_are_capped_at_the_usable_cores():
    import os

    import torch

    from clexp.data.images import usable_cores, worker_loader

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == cores
    sampler = torch.utils.data.SequentialSampler(range(4))
    assert worker_loader([0, 1, 2, 3], sampler, cores + 3, pin_memory=False).num_workers == cores
    assert worker_loader([0, 1, 2, 3], sampler, 0, pin_memory=False).num_workers == 0


def test_version_names_clexp_and_the_libraries(clexp_main, tmp_path):
    from importlib import metadata

    import clexp

    out = clexp_main(["--version"], tmp_path)
    assert out.returncode == 0
    assert out.stdout.startswith(f"clexp {clexp.__version__} (")
    for name, dist in (("torch", "torch"), ("Lightning", "pytorch-lightning"), ("Hydra", "hydra-core")):
        assert f"{name} {metadata.version(dist)}" in out.stdout


def test_help_lists_the_launchers_and_sweepers(clexp_main, tmp_path):
    out = clexp_main(["--help"], tmp_path)
    assert out.returncode == 0
    lines = {line.split(":")[0]: line for line in out.stdout.splitlines() if line.startswith("hydra/")}
    assert {"parallel", "submitit_local", "slurm", "ray", "basic"} <= set(lines["hydra/launcher"][16:].split(", "))
    assert "basic" in lines["hydra/sweeper"][15:].split(", ")


def test_caches_follow_paths_data_dir_only_when_it_is_given(monkeypatch, tmp_path):
    from clexp.train import cache_dir, data_dir_from_argv

    monkeypatch.delenv("CLEXP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir_from_argv(["method=ewc"]) is None
    assert cache_dir(None) == tmp_path / "xdg" / "clexp"
    assert data_dir_from_argv(["paths.data_dir=/data/cl"]) == "/data/cl"
    assert cache_dir("/data/cl") == Path("/data/cl/.cache")
    monkeypatch.setenv("CLEXP_DATA_DIR", str(tmp_path / "d"))
    assert cache_dir(data_dir_from_argv([])) == tmp_path / "d" / ".cache"


def test_dropping_the_progress_callback_leaves_no_bar_at_all(tmp_path, capsys):
    """`callbacks.progress=null` with the trainer's progress bar on: Lightning must not put its own in its place."""
    from tests.conftest import run_stream

    run_stream(tmp_path, ["trainer.enable_progress_bar=true", "callbacks.progress=null", "scenario.n_experiences=2",
                          "train.epochs=1", "plots=false"])
    out = capsys.readouterr()
    assert "it/s" not in out.out + out.err and "Training" not in out.out + out.err
