"""The validation split (`train.val_fraction`): carved out of each experience's training data, disjoint
from its training batches and test set, class-stratified, seeded by `seed` and the experience only
(the same for every method and strength of a sweep), evaluated after every experience like the test
sets; `train.val_fraction=0` is the stream without one."""

import json

import pytest
import torch

from clexp.config.errors import ConfigError
from clexp.data.base import SourceData
from clexp.data.stream import Permuted, Split, carve_validation, smallest_working_fraction
from tests.conftest import compose, run_stream


def ids_data(per_class=(40, 30, 25, 50), n_test=5):
    """Flat inputs whose first feature is a unique id: which example went where can be read back."""
    ys = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    x = torch.stack([torch.arange(len(ys), dtype=torch.float32), ys.float()], dim=1)
    yt = torch.arange(len(per_class)).repeat(n_test)
    xt = torch.stack([1000 + torch.arange(len(yt), dtype=torch.float32), yt.float()], dim=1)
    return SourceData("ids", x, ys, xt, yt, len(per_class))


def ids(x):
    return set(x[:, 0].long().tolist())


@pytest.mark.parametrize("incremental", ["class", "domain", "task"])
def test_split_is_disjoint_stratified_and_keeps_every_example(incremental):
    data = ids_data()
    stream = carve_validation(Split(incremental, n_experiences=2)(data), 0.2, seed=0)
    seen = set()
    for e in stream:
        train, val, test = ids(e.x_train), ids(e.x_val), ids(e.x_test)
        assert not train & val and not (train | val) & test
        seen |= train | val
        for target in torch.unique(e.y_train).tolist():  # floor(0.2 n) of each class, none else
            n = int((e.y_train == target).sum() + (e.y_val == target).sum())
            assert int((e.y_val == target).sum()) == int(0.2 * n)
        assert torch.equal(e.t_val, torch.full((len(e.y_val),), e.index))
    assert seen == ids(data.x_train)  # nothing lost: train + val = the experience's training data


def test_split_depends_on_the_seed_and_the_experience_only():
    data = ids_data()
    a = carve_validation(Split("class", 2)(data), 0.2, seed=3)
    b = carve_validation(Split("class", 2)(data), 0.2, seed=3)
    c = carve_validation(Split("class", 2)(data), 0.2, seed=4)
    assert [ids(e.x_val) for e in a] == [ids(e.x_val) for e in b]
    assert [ids(e.x_val) for e in a] != [ids(e.x_val) for e in c]
    # permuted: every experience holds the same examples; the split is drawn per experience
    p = carve_validation(Permuted("domain", 2, first_identity=True)(data), 0.2, seed=3)
    assert not torch.equal(p[0].y_val, p[1].y_val) or not torch.equal(p[0].x_val.sort(0).values,
                                                                      p[1].x_val.sort(0).values)


def test_the_same_split_for_every_method_and_strength_of_a_sweep(tmp_path):
    from clexp.core.build import components, load_stream

    def val_sets(overrides):
        cfg = compose(["seed=2", *overrides])
        stream = carve_validation(load_stream(cfg, components(cfg).scenario), cfg.train.val_fraction, cfg.seed)
        return [(e.x_val.clone(), e.y_val.clone()) for e in stream]

    ref = val_sets(["method=naive"])
    for overrides in (["method=ewc", "method.lam=10"], ["method=si", "method.c=3"], ["optimizer.lr=0.5"]):
        other = val_sets(overrides)
        assert all(torch.equal(x, x2) and torch.equal(y, y2) for (x, y), (x2, y2) in zip(ref, other))


def test_fraction_zero_is_the_stream_without_validation():
    data = ids_data()
    plain = Split("class", 2)(data)
    stream = carve_validation(Split("class", 2)(data), 0, seed=0)
    assert not stream.has_validation and all(e.x_val is None for e in stream)
    assert all(torch.equal(a.x_train, b.x_train) for a, b in zip(plain, stream))


def test_a_class_without_validation_example_is_named_with_the_smallest_fraction():
    data = ids_data(per_class=(40, 30, 8, 50))
    stream = Split("class", 2)(data)
    assert smallest_working_fraction(stream.experiences) == 0.125
    with pytest.raises(ConfigError, match=r"experience 1 .* class 2.*0\.125"):
        carve_validation(stream, 0.1, seed=0)
    carve_validation(Split("class", 2)(data), 0.125, seed=0)  # that one works


def test_run_records_the_validation_matrix_and_metrics(tmp_path):
    results = run_stream(tmp_path, ["scenario.n_experiences=2", "train.epochs=1"])
    V = results["val_acc_matrix"]
    assert len(V) == 2 and all(len(r) == 2 for r in V) and all(0 <= a <= 1 for r in V for a in r)
    assert set(results["val_metrics"]) == set(results["metrics"])
    assert results["val_metrics"]["avg_acc"] == pytest.approx(sum(V[-1]) / 2)
    assert V != results["acc_matrix"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["val_acc_matrix"] == V and len(saved["val_baseline_acc"]) == 2


def test_fraction_zero_gives_null_keys_and_trains_on_everything(tmp_path):
    with_val = run_stream(tmp_path / "a", ["scenario.n_experiences=2", "train.epochs=1"])
    without = run_stream(tmp_path / "b", ["scenario.n_experiences=2", "train.epochs=1", "train.val_fraction=0"])
    assert without["val_acc_matrix"] is None and without["val_metrics"] is None
    assert without["acc_matrix"] != with_val["acc_matrix"]  # more training data: another run
