"""Experience replay: the reservoir against a one-by-one replica and against its probability law, the replay
batch, replayed task ids scored by their own heads, the memory report, `+replay=er` with every method, a
task-free stream, and a resume mid-experience that ends bit for bit where the uninterrupted run ends."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from clexp.config.overrides import check_method_keys
from clexp.core.build import build_named
from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from clexp.methods.er import ExperienceReplay
from tests.conftest import CONF, FAST, compose, run_stream
from tests.stop_resume import stopped_and_resumed

TINY = [*FAST, "model.hidden=[16]", "plots=false", "train.epochs=1"]


def replica(batches, capacity: int, seed_generator: torch.Generator):
    """Reservoir sampling (algorithm R) one sample at a time: sample m fills slot m while m < capacity, else
    draws j = floor(u·(m + 1)) and replaces slot j when j < capacity. The draws: one uniform per sample once
    the buffer is full, taken in blocks of each batch's full samples (the generator's contract of `add`)."""
    slots: list = [None] * capacity
    m = 0
    for batch in batches:
        n_full = sum(1 for k in range(len(batch)) if m + k >= capacity)
        draws = torch.rand(n_full, generator=seed_generator, dtype=torch.float64).tolist() if n_full else []
        for item in batch:
            if m < capacity:
                slots[m] = item
            else:
                j = int(draws.pop(0) * (m + 1))
                if j < capacity:
                    slots[j] = item
            m += 1
    return slots


def test_reservoir_equals_the_one_by_one_algorithm():
    sizes = [3, 7, 1, 16, 16, 5, 30, 2, 11]
    ids = torch.arange(sum(sizes))
    batches = list(ids.split(sizes))
    er = ExperienceReplay(buffer_size=10, replay_batch_size=4, seed=3)
    g = torch.Generator()
    g.set_state(er.generator.get_state())
    for b in batches:
        er.add(b.float().view(-1, 1), b, torch.zeros_like(b))
    expected = replica([b.tolist() for b in batches], 10, g)
    assert er.y.tolist() == expected and er.x.view(-1).long().tolist() == expected
    assert er.seen == sum(sizes)


def test_every_sample_is_kept_with_probability_capacity_over_n():
    n, capacity, trials = 60, 12, 500
    counts = torch.zeros(n)
    for seed in range(trials):
        er = ExperienceReplay(buffer_size=capacity, replay_batch_size=1, seed=seed)
        for b in torch.arange(n).split(20):
            er.add(b.float().view(-1, 1), b, torch.zeros_like(b))
        kept = er.y
        assert len(set(kept.tolist())) == capacity  # never a sample twice
        counts[kept] += 1
    freq = counts / trials
    p = capacity / n
    sigma = (p * (1 - p) / trials) ** 0.5
    assert (freq - p).abs().max() < 5 * sigma, freq  # each of the 60 samples: 0.2 ± 5σ, the first and the last


def test_replay_batch_appends_buffer_samples_with_their_task_ids():
    er = ExperienceReplay(buffer_size=6, replay_batch_size=4, seed=0)
    x0, y0, t0 = torch.randn(5, 2), torch.arange(5), torch.full((5,), 2)
    assert er.replay_batch(None, x0, y0, t0)[0] is x0  # empty buffer: the batch itself
    er.add(x0, y0, t0)
    x, y, t = er.replay_batch(None, x0[:2], y0[:2], torch.zeros(2, dtype=torch.long))
    assert len(y) == 2 + 4 and torch.equal(x[:2], x0[:2])
    replayed = y[2:]
    assert len(set(replayed.tolist())) == 4 and torch.equal(x[2:], x0[replayed]) and (t[2:] == 2).all()
    x, y, t = ExperienceReplay(buffer_size=6, replay_batch_size=40, seed=0).replay_batch(None, x0, y0, t0)
    assert len(y) == 5  # still empty
    er.replay_batch_size = 40
    assert len(er.replay_batch(None, x0, y0, t0)[1]) == 5 + 5  # all it holds, once each


class HeadGradient(pl.Callback):
    """The gradient norm of head 0 at each step of experience 1."""

    def __init__(self):
        self.norms = []

    def on_after_backward(self, trainer, pl_module):
        if int(pl_module.experience) == 1:
            g = pl_module.model.heads[0].weight.grad
            self.norms.append(0.0 if g is None else float(g.norm()))


@pytest.mark.parametrize("method", ["naive", "er"])
def test_replayed_samples_train_their_own_head(tmp_path, method):
    cfg = compose([*TINY, f"method={method}", "scenario.incremental=task", "model.multihead=true",
                   "scenario.n_experiences=2", "train.iterations=6"])
    probe = HeadGradient()
    StreamRunner(cfg, tmp_path, parts=validate(cfg), extra_callbacks=[probe]).run()
    if method == "naive":  # no sample of experience 0 in experience 1: its head gets nothing
        assert probe.norms and max(probe.norms) == 0.0
    else:  # replayed experience-0 samples are scored by head 0
        assert probe.norms and min(probe.norms) > 0.0


def test_memory_is_reported_and_the_stream_runs_task_free(tmp_path):
    r = run_stream(tmp_path, ["model.hidden=[16]", "plots=false", "method=er", "method.buffer_size=30",
                              "scenario.task_free=true", "train.iterations=20"])
    mem = r["memory"]
    per_input = 1 * 8 * 8 * 4  # a digit: 1×8×8 float32
    seen = 20 * 32  # 20 steps of batch 32 (every experience has more)
    assert mem["samples"] == 30 and mem["seen"] == seen
    assert mem["bytes"] == 30 * (per_input + 8 + 8)  # inputs, int64 targets and task ids


def test_replay_combines_with_every_method():
    methods = sorted(p.stem for p in Path(CONF / "method").glob("*.yaml"))
    for method in methods:
        cfg = compose([f"method={method}", "+replay=er", "method.buffer_size=50"])
        check_method_keys(cfg.method)  # ER's keys are read by its callback
        built = build_named(cfg.method.callbacks, "method.callbacks")
        replay = [cb for cb in built if isinstance(cb, ExperienceReplay)]
        assert len(replay) == 1 and replay[0].buffer_size == 50 and replay[0].replay_batch_size == cfg.train.batch_size
        if method not in ("er",):
            assert cfg.name.startswith(f"{method}-") and "-er-" in cfg.name


@pytest.mark.parametrize("method", [["method=er"], ["method=si", "+replay=er"]], ids=["er", "si+er"])
def test_stopped_run_resumes_to_identical_results(tmp_path, method):
    base = [*TINY, *method, "scenario.n_experiences=2", "train.iterations=12", "trainer.checkpoint_every_n_steps=5",
            "method.buffer_size=40", "optimizer=adam", "optimizer.lr=0.01"]
    # stopped at step 18: in experience 1 (steps 12..23), after its checkpoint at its step 5 (17)
    full, resumed, state, a, b = stopped_and_resumed(base, tmp_path, 19)
    assert not state["finished"] and state["steps"] + state["point"]["step"] == 17
    assert full["acc_matrix"] == resumed["acc_matrix"] and full["memory"] == resumed["memory"]
    for k in a["module"]:
        assert torch.equal(a["module"][k], b["module"][k]), k
    buf_a = next(s for s in a["method_callbacks"] if s and "seen" in s)
    buf_b = next(s for s in b["method_callbacks"] if s and "seen" in s)
    assert buf_a["seen"] == buf_b["seen"] and torch.equal(buf_a["generator"], buf_b["generator"])
    for key in "xyt":
        assert torch.equal(buf_a[key], buf_b[key]), key
