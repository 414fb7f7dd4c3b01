"""Stream builders: class partitions, label remapping, task ids, permutations, rotations, seeds."""

import pytest
import torch

from clexp.data.base import SourceData
from clexp.data.stream import build_permuted, build_rotated, build_split, class_order


def toy(n_classes=10, per_class=6, shape=(1, 4, 4)) -> SourceData:
    y = torch.arange(n_classes).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(0)
    x_tr = torch.randn(len(y), *shape, generator=g)
    x_te = torch.randn(len(y), *shape, generator=g)
    return SourceData("toy", x_tr, y, x_te, y.clone(), n_classes)


def test_split_partitions_classes_in_order():
    s = build_split(toy(), 5, "class")
    assert [e.classes for e in s] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert s.n_outputs == 10
    for e in s:
        assert set(e.y_train.tolist()) == set(e.classes)  # class-IL keeps original labels
        assert (e.t_train == e.index).all() and (e.t_test == e.index).all()
    assert sum(len(e.y_train) for e in s) == 60


def test_split_domain_il_remaps_labels_within_experience():
    d = toy()
    d.x_train[:, 0, 0, 0] = d.y_train.float()  # the original label is readable from the input
    s = build_split(d, 5, "domain", order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert s.n_outputs == 2
    e = s[0]
    assert e.classes == [9, 8]
    original = e.x_train[:, 0, 0, 0].long()
    assert torch.equal(e.y_train, (original == 8).long())  # 9 -> 0, 8 -> 1
    assert set(e.y_test.tolist()) == {0, 1}
    assert s.task_masks is None


def test_split_task_il_masks_and_multihead():
    masked = build_split(toy(), 5, "task")
    m = masked.task_masks
    assert m.shape == (5, 10) and m.sum(1).tolist() == [2] * 5
    assert m[1].nonzero().flatten().tolist() == [2, 3]
    heads = build_split(toy(), 5, "task", multihead=True)
    assert heads.n_outputs == 2 and heads.task_masks is None
    assert set(heads[3].y_train.tolist()) == {0, 1}


def test_split_must_divide_classes():
    with pytest.raises(ValueError, match="n_experiences"):
        build_split(toy(), 3, "class")


def test_class_order_is_seeded_and_validated():
    assert class_order(10, None, True, 1) == class_order(10, None, True, 1)
    assert class_order(10, None, True, 1) != class_order(10, None, True, 2)
    assert sorted(class_order(10, None, True, 3)) == list(range(10))
    assert class_order(10, None, False, 3) == list(range(10))
    with pytest.raises(ValueError, match="permutation"):
        class_order(10, [0, 0, 1, 2, 3, 4, 5, 6, 7, 8], False, 0)


def test_permuted_applies_one_fixed_permutation_per_experience_to_train_and_test():
    d = toy()
    # make the test set identical to the train set: then both must be permuted identically
    d = SourceData("toy", d.x_train, d.y_train, d.x_train.clone(), d.y_train.clone(), 10)
    s = build_permuted(d, 3, "domain", seed=0)
    assert torch.equal(s[0].x_train, d.x_train)  # the first is the identity
    for e in s:
        assert torch.equal(e.x_train, e.x_test)
    assert not torch.equal(s[1].x_train, s[2].x_train)
    # it is a permutation of the pixels of each image
    flat0, flat1 = d.x_train.flatten(1), s[1].x_train.flatten(1)
    assert torch.equal(flat0.sort(1).values, flat1.sort(1).values)
    again = build_permuted(d, 3, "domain", seed=0)
    assert torch.equal(again[2].x_train, s[2].x_train)
    other = build_permuted(d, 3, "domain", seed=1)
    assert not torch.equal(other[2].x_train, s[2].x_train)


def test_permuted_class_il_offsets_labels_per_experience():
    s = build_permuted(toy(), 3, "class")
    assert s.n_outputs == 30
    assert set(s[2].y_train.tolist()) == set(range(20, 30))
    t = build_permuted(toy(), 3, "task")
    assert t.task_masks[1].nonzero().flatten().tolist() == list(range(10, 20))


def test_rotated_uses_fixed_angles():
    d = toy(shape=(1, 8, 8))
    s = build_rotated(d, 3, "domain", angles=[0, 90, 180])
    assert torch.equal(s[0].x_train, d.x_train)
    rot180 = torch.flip(d.x_train, dims=(-2, -1))
    assert torch.allclose(s[2].x_train, rot180, atol=1e-4)
    assert torch.allclose(s[1].x_train, torch.rot90(d.x_train, 1, dims=(-2, -1)), atol=1e-4)


def test_scenario_objects_build_streams_and_check_their_values():
    from clexp.config.errors import ConfigError
    from clexp.data.stream import Permuted, Rotated, Split

    assert len(Split(incremental="class", n_experiences=2)(toy())) == 2
    assert Split(n_experiences=2)(toy()).name == "split_toy"
    with pytest.raises(ConfigError, match="incremental"):
        Split(incremental="bogus", n_experiences=2)
    with pytest.raises(ConfigError, match="n_experiences"):
        Permuted(n_experiences=0)
    with pytest.raises(ConfigError, match="angles"):
        Rotated(n_experiences=3, angles=[0, 90])
    with pytest.raises(ValueError, match="multihead"):
        Split(incremental="class", n_experiences=2)(toy(), multihead=True)
