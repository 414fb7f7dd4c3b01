"""PackNet: the pruning mask against numpy, earlier experiences' weights bit-identical after later training
(SGD with momentum and weight decay, which would move them), each experience evaluated with its own mask,
the capacity left against the floor recursion, and the capacity check."""

import math

import numpy as np
import pytest
import torch

from clexp.config.errors import ConfigError
from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from clexp.methods.packnet import FREE, PackNetMasks, prunable_parameters
from clexp.models import MLP
from tests.conftest import FAST, compose
from tests.stop_resume import stopped_and_resumed


def numpy_prune(w: np.ndarray, free: np.ndarray, p: float):
    """(pruned, kept) flat indices: of the free weights, the floor(p·n) smallest |w| (stable order) are pruned."""
    idx = np.flatnonzero(free)
    order = np.argsort(np.abs(w.ravel()[idx]), kind="stable")
    k = math.floor(p * len(idx))
    return set(idx[order[:k]].tolist()), set(idx[order[k:]].tolist())


@pytest.mark.parametrize("p", [0.5, 0.75, 0.3])
def test_pruning_mask_equals_a_direct_computation(p):
    torch.manual_seed(0)
    model = MLP((1, 6, 6), 4, hidden=(7, 5))
    reg = PackNetMasks(prune_fraction=p)
    reg.bind(model)
    assert reg.names == ["features.1.weight", "features.3.weight"]  # the two hidden Linear weights, no head
    params = dict(model.named_parameters())
    for experience in range(3):
        with torch.no_grad():  # new values for the free weights, as training would give them
            for n in reg.names:
                free = reg.owner(n) == FREE
                params[n][free] = torch.randn(int(free.sum()))
        before = {n: (params[n].detach().numpy().copy(), (reg.owner(n) == FREE).numpy().copy(),
                      reg.owner(n).clone()) for n in reg.names}
        reg.prune(model, experience)
        for n in reg.names:
            w, free, owner_before = before[n]
            pruned, kept = numpy_prune(w, free, p)
            owner = reg.owner(n).flatten().numpy()
            value = params[n].detach().flatten().numpy()
            assert {i for i in np.flatnonzero(free) if owner[i] == FREE} == pruned
            assert {i for i in np.flatnonzero(owner == experience)} == kept
            assert all(value[i] == 0.0 for i in pruned)
            assert np.array_equal(value[list(kept)], w.ravel()[list(kept)])
            older = owner_before.flatten().numpy() != FREE  # earlier experiences' weights: untouched
            assert np.array_equal(owner[older], owner_before.flatten().numpy()[older])


def test_prunable_parameters_are_backbone_weights():
    model = compose(["model=cnn", "model.batch_norm=true"])  # config only: the names come from a built model
    from clexp.core.build import build_model
    from clexp.data.stream import Stream

    net = build_model(model, Stream("s", "task", [], n_outputs=4, input_shape=(1, 8, 8)))
    prunable, shared = prunable_parameters(net)
    assert prunable == ["features.0.weight", "features.4.weight", "features.9.weight"]  # conv, conv, fc
    assert "features.1.weight" in shared and "features.0.bias" in shared  # BatchNorm's γ, a bias
    assert not any(n.startswith("head") for n in prunable + shared)


BASE = [*FAST, "model.hidden=[32,16]", "plots=false", "train.epochs=1", "train.iterations=8", "method=packnet",
        "scenario.incremental=task", "scenario.n_experiences=5", "optimizer=sgd", "optimizer.lr=0.1",
        "optimizer.momentum=0.9", "optimizer.weight_decay=0.01", "method.retrain_epochs=1"]


@pytest.mark.parametrize("heads", ["shared", "multihead"])
def test_earlier_experiences_stay_bit_identical(tmp_path, heads):
    cfg = compose([*BASE, *(["model.multihead=true"] if heads == "multihead" else [])])
    runner = StreamRunner(cfg, tmp_path, parts=validate(cfg))
    reg, model = runner.module.regularizer, runner.model
    snapshots = []
    for i in range(len(runner.stream)):
        runner.run_experience(i)
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        owners = {n: reg.owner(n).clone() for n in reg.names}
    last = snapshots[-1]
    for i, snap in enumerate(snapshots[:-1]):
        for n in reg.names:  # experience ≤ i's weights: bit for bit as experience i left them
            mine = (owners[n] >= 0) & (owners[n] <= i)
            assert mine.any() and torch.equal(last[n][mine], snap[n][mine]), (i, n)
            pruned = owners[n] > i  # those pruned after experience i were 0 then (and trained later)
            assert (snap[n][pruned | (owners[n] == FREE)] == 0).all()
        for n in reg.shared:  # biases: as experience 0 left them
            assert torch.equal(last[n], snapshots[0][n]), n
        if heads == "multihead":
            assert torch.equal(last[f"heads.{i}.weight"], snap[f"heads.{i}.weight"])
        else:  # the shared head's rows of experience i's classes
            rows = runner.module.task_masks[i]
            assert torch.equal(last["head.weight"][rows], snap["head.weight"][rows])
    # each experience evaluated with its own mask: its accuracy never changes after its own row
    R = runner.accuracy.rows
    for j in range(len(R)):
        assert all(R[i][j] == R[j][j] for i in range(j, len(R))), [r[j] for r in R]


def test_each_experience_is_evaluated_with_its_own_weights(tmp_path):
    cfg = compose([*BASE, "scenario.n_experiences=2", "model.hidden=[12]"])
    runner = StreamRunner(cfg, tmp_path, parts=validate(cfg))
    runner.run_experience(0)
    runner.run_experience(1)
    module, model, reg = runner.module, runner.model, runner.module.regularizer
    module.eval()
    x, t = runner.stream[0].x_test[:6], torch.zeros(6, dtype=torch.long)
    w = model.features[1].weight
    owner = reg.owner("features.1.weight")
    assert (owner == 1).any()
    masked = w.detach() * (owner == 0)  # experience 0: its own weights, experience 1's zeroed
    h = torch.relu(x.flatten(1) @ masked.T + model.features[1].bias)
    expected = (h @ model.head.weight.T + model.head.bias).masked_fill(~module.task_masks[t], float("-inf"))
    before = w.detach().clone()
    got = module(x, t)
    assert torch.allclose(got, expected, atol=1e-6) and torch.equal(w, before)  # weights restored
    mixed = torch.tensor([0, 1, 0, 1, 1, 0])
    both = module(x, mixed)
    assert torch.allclose(both[mixed == 0], got[mixed == 0], atol=1e-6)
    full = model(x[mixed == 1], mixed[mixed == 1])  # experience 1: every weight of experiences ≤ 1
    assert torch.allclose(both[mixed == 1], full.masked_fill(~module.task_masks[1], float("-inf")), atol=1e-6)
    cap = reg.capacity_left(2)
    n = [w.numel()]
    n.append(math.floor(0.75 * n[0]))
    n.append(math.floor(0.75 * n[1]))
    assert cap == [n[1] / n[0], n[2] / n[0]]


def test_capacity_left_in_results_follows_the_floor_recursion(tmp_path):
    from tests.conftest import run_stream

    r = run_stream(tmp_path, ["model.hidden=[10,6]", "plots=false", "method=packnet", "scenario.incremental=task",
                              "method.prune_fraction=0.5", "train.iterations=3", "method.retrain_epochs=0"])
    sizes = [64 * 10, 10 * 6]  # the two hidden Linear weights of 8×8 digits
    free = [list(sizes)]
    for _ in range(5):
        free.append([math.floor(0.5 * f) for f in free[-1]])
    assert r["packnet"]["capacity_left"] == [sum(f) / sum(sizes) for f in free[1:]]
    assert r["packnet"]["prunable_weights"] == sum(sizes)


def test_a_stream_longer_than_the_pruning_leaves_room_for_is_refused():
    model = MLP((1, 8, 8), 10, hidden=(8,))  # one prunable layer of 512 weights
    reg = PackNetMasks(prune_fraction=0.01)
    reg.bind(model)
    # 512 → floor(5.12) = 5 → floor(0.05) = 0: room for 2 experiences
    reg.check_stream(model, 2)
    with pytest.raises(ConfigError, match="room for 2 experience") as info:
        reg.check_stream(model, 3)
    assert info.value.key == "method.prune_fraction" and "after experience 1" in str(info.value)


def test_stopped_run_resumes_to_identical_weights_and_masks(tmp_path):
    """Stopped in experience 1 after a mid-experience checkpoint and resumed: the retrain after pruning (its own
    optimizer and loader pass, dropout drawing from the global generator) ends bit for bit where the
    uninterrupted run ends."""
    base = [*FAST, "model.hidden=[16]", "plots=false", "train.epochs=1", "method=packnet", "model.dropout=0.2",
            "scenario.incremental=task", "scenario.n_experiences=2", "train.iterations=12",
            "trainer.checkpoint_every_n_steps=5", "optimizer=sgd", "optimizer.momentum=0.9"]
    # stopped at step 18: in experience 1 (steps 12..23), after its checkpoint at its step 5 (17)
    full, resumed, state, a, b = stopped_and_resumed(base, tmp_path, 19)
    assert not state["finished"] and state["steps"] + state["point"]["step"] == 17
    assert full["acc_matrix"] == resumed["acc_matrix"] and full["packnet"] == resumed["packnet"]
    a, b = a["module"], b["module"]
    assert a.keys() == b.keys() and any("owner__" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
