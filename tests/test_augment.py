"""`dataset.augment` (clexp/data/augment.py): per-sample random parameters, the input's shape kept, the same
draws for the same (seed, step) and the training's own randomness untouched, training batches only
(evaluation, validation, anytime evaluation and importance estimation see the data as it is), and a
killed run with augmentation resumes to bit-identical weights."""

from __future__ import annotations

import json

import pytest
import torch

from clexp.data.augment import Augment, channel_range, parse
from tests.conftest import FAST, run_stream


def augment(entries, shape=(3, 8, 8), seed=0, value_range=None):
    return Augment(parse(entries), shape, seed, value_range)


def padded_views(img: torch.Tensor, pad: int, fill: torch.Tensor):
    """Every crop of the padded image and of its mirror image, by brute force: {(flip, dy, dx): view}."""
    c, h, w = img.shape
    views = {}
    for flip in (False, True):
        src = img.flip(-1) if flip else img
        canvas = fill.view(c, 1, 1).expand(c, h + 2 * pad, w + 2 * pad).clone()
        canvas[:, pad : pad + h, pad : pad + w] = src
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                views[(flip, dy, dx)] = canvas[:, dy : dy + h, dx : dx + w]
    return views


def test_each_sample_gets_its_own_crop_and_flip_and_each_is_an_exact_crop():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 8, 8, generator=g)
    x = img.expand(64, 3, 8, 8).contiguous()  # one image 64 times: any difference is the draws'
    low = torch.tensor([-3.0, -2.0, -1.0])
    aug = augment([{"name": "random_crop", "padding": 2}, "hflip"], value_range=(low, low + 6))
    out = aug(x, step=0)
    assert out.shape == x.shape and out.dtype == x.dtype
    views = padded_views(img, 2, low)  # the crop of a flipped image = the flip of a crop: both in `views`
    found = []
    for o in out:
        match = [k for k, v in views.items() if torch.equal(o, v)]
        assert match, "an output that is no crop of the black-padded (flipped) image"
        found.append(match[0])
    assert len(set(found)) >= 20  # 50 (flip, offset) pairs: 64 draws per sample hit many of them
    flips = sum(f for f, _, _ in found)
    assert 16 <= flips <= 48  # p = 0.5, per sample


def test_every_augmentation_keeps_the_shape_and_randomises_per_sample():
    x = torch.rand(1, 3, 16, 16).expand(32, 3, 16, 16).contiguous()
    for entry in ({"name": "random_crop", "padding": 3, "padding_mode": "reflect"},
                  {"name": "random_crop", "padding": 3, "fill": 0.5, "padding_mode": "constant"},
                  {"name": "hflip", "p": 0.5},
                  {"name": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
                  {"name": "random_resized_crop", "scale": [0.3, 1.0]}):
        out = augment([entry], shape=(3, 16, 16))(x, step=3)
        assert out.shape == x.shape, entry
        distinct = len({o.numpy().tobytes() for o in out})  # not one draw for the whole batch
        assert distinct == 2 if entry["name"] == "hflip" else distinct > 8, entry
    grey = torch.rand(16, 1, 28, 28)
    out = augment([{"name": "color_jitter", "brightness": 0.5, "contrast": 0.5}, "random_resized_crop"],
                  shape=(1, 28, 28))(grey, step=0)
    assert out.shape == grey.shape


def test_brightness_is_a_per_sample_factor_in_the_channels_value_range():
    """kornia's brightness multiplies [0, 1] images: on the data's own range mapped onto [0, 1], each
    sample's (out - low) / (x - low) is one factor in [1 - b, 1 + b] (where nothing was clamped)."""
    g = torch.Generator().manual_seed(1)
    low, high = torch.tensor([-2.0, -1.0, 0.0]), torch.tensor([2.0, 3.0, 1.0])
    x01 = 0.2 + 0.4 * torch.rand(16, 3, 4, 4, generator=g)  # ×1.5 stays below 1: nothing clamped
    x = x01 * (high - low).view(1, 3, 1, 1) + low.view(1, 3, 1, 1)
    out = augment([{"name": "color_jitter", "brightness": 0.5}], shape=(3, 4, 4), value_range=(low, high))(x, 0)
    ratio = (out - low.view(1, 3, 1, 1)) / (x - low.view(1, 3, 1, 1))
    per_sample = ratio.flatten(1)
    torch.testing.assert_close(per_sample, per_sample[:, :1].expand_as(per_sample), rtol=1e-4, atol=1e-5)
    factors = per_sample[:, 0]
    assert ((factors >= 0.5 - 1e-5) & (factors <= 1.5 + 1e-5)).all()
    assert len(set(factors.round(decimals=4).tolist())) == 16


def test_the_same_seed_and_step_draw_the_same_augmentations_and_leave_the_global_generator_alone():
    x = torch.randn(32, 3, 8, 8)
    entries = [{"name": "random_crop", "padding": 2}, "hflip", {"name": "color_jitter", "brightness": 0.3}]
    a, b, other_seed = augment(entries), augment(entries), augment(entries, seed=1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = a(x, step=5)
    assert torch.equal(torch.get_rng_state(), before)  # dropout, shuffles...: the same as without augmentation
    torch.manual_seed(999)  # whatever the global generator holds
    assert torch.equal(b(x, step=5), first)
    assert torch.equal(a(x, step=5, rank=0), first)
    assert not torch.equal(a(x, step=6), first)
    assert not torch.equal(a(x, step=5, rank=1), first)  # DDP: each rank its own draws
    assert not torch.equal(other_seed(x, step=5), first)


def test_flip_probabilities_zero_and_one():
    x = torch.randn(8, 3, 8, 8)
    assert torch.equal(augment([{"name": "hflip", "p": 0.0}])(x, 0), x)
    assert torch.equal(augment([{"name": "hflip", "p": 1.0}])(x, 0), x.flip(-1))


def test_channel_range():
    a, b = torch.randn(10, 3, 4, 4), torch.randn(5, 3, 4, 4)
    low, high = channel_range([a, None, b])
    both = torch.cat([a, b])
    assert torch.equal(low, both.amin((0, 2, 3))) and torch.equal(high, both.amax((0, 2, 3)))


# ------------------------------------------------------------------------------ inside the runs

TWO = [*FAST, "scenario.n_experiences=2", "train.epochs=1", "plots=false"]
FLIP_ALL = "dataset.augment=[{name:random_crop,padding:1},{name:hflip,p:1.0}]"


@pytest.mark.parametrize("method", ["ewc", "mas", "kfac_ewc"])
def test_only_training_batches_are_augmented(tmp_path, monkeypatch, method):
    """Every forward of the model outside the training step (accuracy matrix, validation, anytime
    evaluation, the method's importance estimation) gets rows of the un-augmented data; the training
    step gets augmented ones (mirrored with p = 1: rows the data does not have)."""
    from clexp.core.module import ContinualModule
    from clexp.core.runner import StreamRunner

    seen = {"train": [], "other": []}
    state = {"in_step": False}
    step = ContinualModule.training_step

    def training_step(self, batch, batch_idx):
        state["in_step"] = True
        try:
            return step(self, batch, batch_idx)
        finally:
            state["in_step"] = False

    monkeypatch.setattr(ContinualModule, "training_step", training_step)
    init = StreamRunner.__init__

    def spying_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.model.register_forward_pre_hook(
            lambda m, inputs: seen["train" if state["in_step"] else "other"].append(inputs[0].detach().clone()))
        spying_init.stream = self.stream

    monkeypatch.setattr(StreamRunner, "__init__", spying_init)
    run_stream(tmp_path, [*TWO, f"method={method}", FLIP_ALL, "eval.every_n_steps=4"], fast=False)
    stream = spying_init.stream
    data = {row.numpy().tobytes() for e in stream for x in (e.x_train, e.x_val, e.x_test) for row in x}
    other = [row.numpy().tobytes() for x in seen["other"] for row in x]
    train = [row.numpy().tobytes() for x in seen["train"] for row in x]
    assert other and train
    assert all(r in data for r in other)  # evaluation and importance estimation: the data as it is
    assert sum(r not in data for r in train) > 0.9 * len(train)  # training: augmented


def test_killed_run_with_augmentation_resumes_to_identical_weights(tmp_path, monkeypatch):
    """The kill of tests/test_resume.py (CLEXP_KILL_AT_STEP), in this process: the SIGKILL becomes an
    exception at the same point, after the last checkpoint; `resume=` then finishes the run."""
    import os

    import clexp
    from clexp.core import checkpoint
    from clexp.core.callbacks import stream_checkpoint

    class Killed(Exception):
        pass

    def kill(pid, sig):
        raise Killed

    monkeypatch.chdir(tmp_path)
    args = [*FAST, "scenario.n_experiences=2", "train.epochs=2", "trainer.checkpoint_every_n_steps=4",
            "method=si", "dataset.augment=[{name:random_crop,padding:2},hflip]", "plots=false"]
    full = clexp.run([*args, "hydra.run.dir=full"])
    monkeypatch.setenv(stream_checkpoint.KILL_ENV, "48")  # experience 1 (steps 42..83), after its step-4 save
    monkeypatch.setattr(os, "kill", kill)
    with pytest.raises(Killed):
        clexp.run([*args, "hydra.run.dir=killed"])
    monkeypatch.delenv(stream_checkpoint.KILL_ENV)
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))
    assert state["experience"] == 1 and not state["finished"] and state["point"]["step"] == 4
    resumed = clexp.run(["resume=killed", "hydra.run.dir=ignored"])
    assert resumed["acc_matrix"] == full["acc_matrix"]
    assert json.loads((tmp_path / "killed" / "results.json").read_text())["acc_matrix"] == full["acc_matrix"]
    wa = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "full"))["module"]
    wb = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))["module"]
    assert wa.keys() == wb.keys()
    for k in wa:  # weights and SI's sums, bit for bit
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_the_gpu_the_draws_are_the_cpus_and_the_gpu_generator_is_untouched():
    """kornia's parameters are drawn on the CPU whatever the input's device: a crop and a flip give the
    same pixels on both, and the GPU's generator (dropout on the device) is left alone."""
    x = torch.randn(64, 3, 32, 32)
    aug = augment([{"name": "random_crop", "padding": 4}, "hflip"], shape=(3, 32, 32))
    cuda_state = torch.cuda.get_rng_state()
    on_gpu = aug(x.cuda(), step=7)
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), aug(x, step=7))
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
