"""logger=tensorboard: the event files hold the keys of the other loggers with their steps (eval/* by
experience, train/loss by the stream's global step), the importance histograms and figures; in a run killed
and resumed, TensorBoard drops the points the killed run logged after its last checkpoint (each step once)."""

import json
import signal

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

from tests.conftest import clexp_cli, run_stream  # noqa: E402


def events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc) -> dict[str, list[tuple[int, float]]]:
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_eval_keys_are_stepped_by_experience(tmp_path):
    results = run_stream(tmp_path, ["logger=tensorboard", "train.epochs=1", "trainer.log_every_n_steps=4",
                                    "method=ewc", "method.lam=1", "scenario.n_experiences=2"])
    acc = events(tmp_path / "tensorboard")
    values = scalars(acc)
    T = len(results["acc_matrix"])
    for j in range(T):  # one point per experience, at steps 0 .. T-1, the accuracy matrix's column j
        assert values[f"eval/acc_exp{j}"] == [(i, pytest.approx(results["acc_matrix"][i][j])) for i in range(T)]
    assert [s for s, _ in values["eval/avg_acc"]] == list(range(T))
    assert values["eval/avg_acc"][-1][1] == pytest.approx(results["metrics"]["avg_acc"])
    assert [s for s, _ in values["eval/forgetting"]] == list(range(1, T))  # undefined after the first
    assert "experience" not in values  # the step, not a metric
    loss_steps = [s for s, _ in values["train/loss"]]
    assert len(loss_steps) > T and loss_steps == sorted(set(loss_steps))
    assert max(loss_steps) > T  # the global step, continuous across experiences (not the experience)
    assert all((s + 1) % 4 == 0 for s in loss_steps[:3])  # at the logging interval
    assert "train/penalty" in values
    assert [e.step for e in acc.Histograms("importance/log10_histogram")] == list(range(T))
    assert {"plots/acc_matrix", "plots/acc_curves", "plots/importance"} <= set(acc.Tags()["images"])
    assert acc.Images("plots/acc_matrix")[0].width > 100
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_bad_logger_choice_lists_tensorboard(clexp_main, tmp_path):
    out = clexp_main(["logger=tensorbord"], tmp_path)
    assert out.returncode != 0 and "tensorboard" in out.stdout + out.stderr


# as tests/test_resume.py: 2 epochs × 9 batches = 18 steps per experience, checkpoints every 4 steps
BASE = ["scenario.incremental=task", "train.epochs=2", "model.hidden=[64]", "logger=tensorboard",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "trainer.checkpoint_every_n_steps=4",
        "trainer.log_every_n_steps=2", "method=ewc"]


@pytest.mark.slow
def test_resumed_run_drops_the_points_logged_after_the_last_checkpoint(tmp_path):
    killed = clexp_cli([*BASE, "hydra.run.dir=killed"], tmp_path, env={"CLEXP_KILL_AT_STEP": "43"})
    assert killed.returncode == -signal.SIGKILL  # at step 43; the last checkpoint was at step 40
    resumed = clexp_cli(["resume=killed"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    folder = tmp_path / "killed" / "tensorboard"
    written = []  # every train/loss event in the files, the killed run's and the resumed run's
    for f in sorted(folder.glob("events.out.tfevents.*")):
        written += [ev.step for ev in EventFileLoader(str(f)).Load()
                    for v in ev.summary.value if v.tag == "train/loss"]
    assert 41 in written and written.count(41) == 2  # logged by both runs
    values = scalars(events(folder))
    steps = [s for s, _ in values["train/loss"]]
    assert steps == sorted(set(steps)) and len(steps) == len(written) - 1  # each step once: the stale one dropped
    assert set(range(1, 88, 2)) <= set(steps)  # every second step (log_every_n_steps=2), none lost
    results = json.loads((tmp_path / "killed" / "results.json").read_text())
    R = results["acc_matrix"]
    for j in range(5):
        assert values[f"eval/acc_exp{j}"] == [(i, pytest.approx(R[i][j])) for i in range(5)]
