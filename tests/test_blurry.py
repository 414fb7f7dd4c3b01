"""Blurry boundaries (clexp/data/stream.py `blur_boundaries`): the documented mixing rule — the share of
foreign samples at each position from a boundary, ½(1 − (j + ½)/m) —, what moves and what does not,
and the runner training a blurry stream in its fixed order."""

import pytest
import torch

from clexp.data.base import SourceData
from clexp.data.stream import blur_boundaries, build_split, carve_validation, foreign_share, swap_probabilities


def source(per_class=200, n_classes=6):
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = torch.stack([torch.arange(len(y), dtype=torch.float32), y.float()], 1)  # x[:, 0]: the sample's id
    return SourceData("ids", x, y, x.clone(), y.clone(), n_classes)


def test_swap_probabilities_fall_linearly_from_a_half():
    p = swap_probabilities(4)
    assert torch.allclose(p, torch.tensor([0.4375, 0.3125, 0.1875, 0.0625], dtype=torch.float64))
    assert len(swap_probabilities(0)) == 0


def test_foreign_share_per_position_follows_the_rule():
    """Over many seeds, the share of foreign samples at distance j from a boundary (on both sides) is
    p_j, and zero beyond the window; the first experience's start and the last one's end stay pure."""
    blur, n = 0.5, 400  # 3 experiences of 400: m = 100 pairs at each of the 2 boundaries
    m = int(blur * n / 2)
    seeds = range(60)
    before = torch.zeros(n, dtype=torch.float64)  # experience 1, counted from its start (boundary 0|1)
    after = torch.zeros(n, dtype=torch.float64)  # experience 0, counted from its end
    for seed in seeds:
        stream = blur_boundaries(build_split(source(), 3, "class"), blur, seed)
        foreign = foreign_share(stream)
        before += foreign[1].double()
        after += foreign[0].flip(0).double()
        assert not foreign[0][: n - m].any() and not foreign[2][m:].any()  # nothing foreign outside the windows
        assert not foreign[1][m: n - m].any()
    before, after = before / len(seeds), after / len(seeds)
    p = swap_probabilities(m)
    for share in (before, after):
        binned = share[:m].reshape(10, -1).mean(1)  # 10 positions per bin: sampling error ~0.02
        assert torch.allclose(binned, p.reshape(10, -1).mean(1), atol=0.05), binned
        assert share[m: n - m].sum() == 0
    # the whole experience: blur/4 foreign for an inner one (both ends), blur/8 for the first
    assert abs(before[:m].sum() / n * 2 - blur / 4) < 0.01


def test_samples_move_with_their_label_and_task_and_nothing_is_lost():
    stream = build_split(source(per_class=50), 3, "domain")
    ids_before = {e.index: set(e.x_train[:, 0].long().tolist()) for e in stream}
    blur_boundaries(stream, 0.6, seed=3)
    everything = torch.cat([e.x_train[:, 0] for e in stream]).long()
    assert sorted(everything.tolist()) == sorted(set().union(*ids_before.values()))  # each sample exactly once
    for e in stream:
        assert len(e.y_train) == 100  # sizes kept
        for row, y, t in zip(e.x_train, e.y_train, e.t_train):
            original_class = int(row[1])
            assert int(row[0]) in ids_before[int(t)]  # its task id is where it came from
            assert int(y) == original_class % 2  # its (domain-IL) label travelled with it
        assert (e.t_train != e.index).any()
        assert (e.y_test >= 0).all() and (e.t_test == e.index).all()  # test sets untouched


def test_validation_is_carved_before_and_stays_pure():
    stream = carve_validation(build_split(source(per_class=50), 3, "class"), 0.2, seed=0)
    val = [e.x_val.clone() for e in stream]
    blur_boundaries(stream, 0.5, seed=0)
    assert all(torch.equal(v, e.x_val) for v, e in zip(val, stream))


def test_zero_blur_only_fixes_the_order():
    stream = blur_boundaries(build_split(source(per_class=20), 3, "class"), 0.0, seed=1)
    assert not any(f.any() for f in foreign_share(stream))


@pytest.mark.parametrize("blur", [-0.1, 1.0, 1.5])
def test_blur_outside_the_interval_is_refused(blur):
    from clexp.config.errors import ConfigError

    with pytest.raises(ConfigError, match="blur"):
        blur_boundaries(build_split(source(per_class=4), 3, "class"), blur, seed=0)


def test_runner_trains_a_blurry_stream_in_its_order(tmp_path):
    from types import SimpleNamespace

    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate
    from tests.conftest import FAST, compose

    cfg = compose([*FAST, "plots=false", "scenario.boundaries=blurry", "scenario.blur=0.4"])
    runner = StreamRunner(cfg, tmp_path, parts=validate(cfg))
    trainer = SimpleNamespace(global_rank=0, world_size=1, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    loader = runner.loader(1, trainer)
    first = next(iter(loader))
    e = runner.stream[1]
    assert not loader.shuffle and torch.equal(first[0], e.x_train[: len(first[0])])
    assert torch.equal(first[2], e.t_train[: len(first[0])]) and (e.t_train == 0).any()  # foreign at its start
