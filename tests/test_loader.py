"""The tensor-resident batch loader: coverage, reproducible shuffles, equal-length DDP shards."""

import torch

from clexp.data.loader import TensorLoader


def test_one_pass_covers_every_sample_once():
    x = torch.arange(10)
    batches = list(TensorLoader((x,), 3, seed=0))
    assert [len(b[0]) for b in batches] == [3, 3, 3, 1]
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == list(range(10))


def test_reshuffles_each_pass_and_restores_from_state():
    x = torch.arange(50)
    a = TensorLoader((x,), 50, seed=3)
    first, second = next(iter(a))[0], next(iter(a))[0]
    assert not torch.equal(first, second)
    b = TensorLoader((x,), 50, seed=3)
    b.load_state_dict({"passes": 1})
    assert torch.equal(next(iter(b))[0], second)


def test_shards_are_disjoint_complete_and_equal_length():
    x = torch.arange(11)
    shards = [TensorLoader((x,), 4, seed=1, rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    seen = [torch.cat([b[0] for b in s]) for s in shards]
    assert len(seen[0]) == len(seen[1]) == 6  # padded by wrap-around
    assert set(seen[0].tolist()) | set(seen[1].tolist()) == set(range(11))


def test_tuples_stay_aligned():
    x, y = torch.arange(20), torch.arange(20) * 10
    for bx, by in TensorLoader((x, y), 7, seed=0):
        assert torch.equal(by, bx * 10)
