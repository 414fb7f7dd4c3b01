"""The gradient-constraint methods (gpm, ogd, agem): each projection against an independent computation in
float64, GPM's update orthogonal to its bases inside the real training loop, runs on tiny data in every
scenario with their memory in results.json, and a stopped run that resumes bit for bit."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from clexp.core import checkpoint
from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from clexp.methods import agem, gpm, ogd
from tests.conftest import FAST, compose
from tests.stop_resume import Stop, StopAt

TINY = [*FAST, "model.hidden=[16]", "plots=false", "train.epochs=null", "train.iterations=6",
        "scenario.n_experiences=5", "scenario.use_first=3", "train.val_fraction=0"]


def runner(tmp_path, overrides, extra=()):
    cfg = compose([*TINY, *overrides])
    return StreamRunner(cfg, tmp_path, parts=validate(cfg), extra_callbacks=list(extra))


# ------------------------------------------------------------------------------ GPM


def rank(S) -> int:
    """Singular values that are directions (S² above 1e-10 of the largest S², as the method counts them)."""
    return int((S ** 2 > 1e-10 * S[0] ** 2).sum()) if len(S) and S[0] > 0 else 0


def numpy_gpm(mats, threshold):
    """The paper's criteria written out with numpy's SVD (Eq. 5 for the first matrix, Eq. 9 after)."""
    M = None
    for R in mats:
        total = (R ** 2).sum()
        if M is None:
            U, S, _ = np.linalg.svd(R, full_matrices=False)
            k = 0
            while k < rank(S) and (S[:k] ** 2).sum() < threshold * total:  # rank: threshold 1 ends in roundoff
                k += 1
            M = U[:, :k]
        else:
            R_hat = R - M @ M.T @ R
            U, S, _ = np.linalg.svd(R_hat, full_matrices=False)
            explained = total - (R_hat ** 2).sum()
            k = 0
            while k < rank(S) and explained + (S[:k] ** 2).sum() < threshold * total:
                k += 1
            M = np.hstack([M, U[:, :k]])
    return M


def test_gpm_layer_thresholds_hidden_and_per_task_increment():
    """`threshold` for the first layer, `hidden_threshold` for the later ones, each plus the increment per
    experience already consolidated, capped at 1; the defaults: one threshold for every layer, every time."""
    plain = gpm.GradientProjectionMemory(threshold=0.9)
    assert plain.layer_thresholds(3, 0) == plain.layer_thresholds(3, 4) == [0.9, 0.9, 0.9]
    cb = gpm.GradientProjectionMemory(threshold=0.9, hidden_threshold=0.97, threshold_increment=0.01)
    assert cb.layer_thresholds(3, 0) == pytest.approx([0.9, 0.97, 0.97])
    assert cb.layer_thresholds(3, 2) == pytest.approx([0.92, 0.99, 0.99])
    assert cb.layer_thresholds(2, 5) == pytest.approx([0.95, 1.0])
    for bad in ({"hidden_threshold": 0.0}, {"hidden_threshold": 1.5}, {"threshold_increment": -0.1}):
        with pytest.raises(Exception, match=next(iter(bad))):
            gpm.GradientProjectionMemory(**bad)


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.99, 1.0])
def test_gpm_basis_equals_numpy_svd_with_the_energy_criterion(threshold):
    rng = np.random.default_rng(0)
    d = 12
    # three "experiences": low-rank representations with a decaying spectrum, partly overlapping
    mix = rng.normal(size=(d, d)) * (0.7 ** np.arange(d))
    mats = [mix[:, :8] @ rng.normal(size=(8, 40)) * s for s in (1.0, 0.5, 2.0)]
    mats[1][:, :5] += rng.normal(size=(d, 5)) * 3  # new directions in the second one
    expected = numpy_gpm(mats, threshold)
    basis = torch.zeros(d, 0, dtype=torch.float64)
    for R in mats:
        basis = gpm.update_basis(basis, torch.from_numpy(R @ R.T), threshold)
    assert basis.shape == expected.shape
    assert basis.shape[1] <= np.linalg.matrix_rank(np.hstack(mats))  # never beyond the representations' rank
    np.testing.assert_allclose((basis @ basis.T).numpy(), expected @ expected.T, atol=1e-8)
    np.testing.assert_allclose((basis.T @ basis).numpy(), np.eye(basis.shape[1]), atol=1e-10)


def test_gpm_representation_of_linear_and_conv_layers_by_hand():
    torch.manual_seed(0)
    conv, lin = nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.Linear(3 * 3 * 3, 4, bias=False)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, t=None):
            return self.net(x)

    x = torch.randn(5, 2, 5, 5, dtype=torch.float64)
    net = Wrapped().double()
    layers = gpm.projected_layers(net)
    assert [m for _, m in layers] == [conv, lin]
    grams = gpm.representation_grams(net, layers, x, torch.zeros(5, dtype=torch.long), chunk=2)
    # the conv's patches as the official code builds them: every input, every output position, [patch; 1]
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = [np.append(padded[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(-1), 1.0)
            for n in range(5) for i in range(3) for j in range(3)]
    R = np.stack(cols, axis=1)
    np.testing.assert_allclose(grams[0].numpy(), R @ R.T, rtol=1e-10)
    with torch.no_grad():
        a = torch.relu(conv(x)).flatten(1).numpy()
    np.testing.assert_allclose(grams[1].numpy(), a.T @ a, rtol=1e-10)


class OrthogonalityCheck(pl.Callback):
    """After GPM's projection (the method's callback runs first): every layer's [∇W, ∇b] against its basis."""

    def __init__(self):
        self.worst, self.checked = 0.0, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        reg = pl_module.regularizer
        if any(reg.basis(i).shape[1] for i in range(len(reg.layers))):
            rows = {i: r for i, r in reg._rows.items()}
            for i, (_, m) in enumerate(reg.layers):
                M = reg.basis(i)
                if not M.shape[1]:
                    continue
                g = m.weight.grad.view(m.weight.shape[0], -1)
                full = torch.cat([g, m.bias.grad[:, None]], dim=1)
                if i in rows:  # task-IL's free rows of the shared head: only the protected ones
                    full = full[rows[i][:, 0].bool()]
                self.worst = max(self.worst, float((full @ M).abs().max() / full.norm()))
            self.checked += 1


@pytest.mark.parametrize("incremental,model", [("domain", []), ("task", ["model=cnn", "model.channels=[4]",
                                                                      "model.hidden=[8]"])])
def test_gpm_update_is_orthogonal_to_the_stored_bases(tmp_path, incremental, model):
    check = OrthogonalityCheck()
    r = runner(tmp_path, ["method=gpm", f"scenario.incremental={incremental}", "method.threshold=0.9", *model],
               [check])
    results = r.run()
    assert check.checked == 2 * 6  # every step of experiences 1 and 2
    assert check.worst < 1e-5, check.worst
    sizes = results["method_state"]["basis_sizes"]
    assert len(sizes) == 3 and all(0 < k <= d for k, d in zip(sizes[0], results["method_state"]["dims"]))
    assert all(a <= b for row0, row1 in zip(sizes, sizes[1:]) for a, b in zip(row0, row1))  # bases only grow
    if incremental == "task":  # a masked shared head: the rows of the current experience's outputs are free
        head = [i for i, (_, m) in enumerate(r.module.regularizer.layers) if m is r.model.head][0]
        r.module.regularizer.free_rows(r.model, r.module.task_masks, 2)  # as at the start of experience 2
        rows = r.module.regularizer._rows[head][:, 0]
        assert torch.equal(rows.bool(), r.module.task_masks[:2].any(0))


def one_layer_bases(lin: nn.Module, basis: torch.Tensor | None = None) -> gpm.GPMBases:
    """GPMBases bound to a model whose one layer is `lin`, holding `basis` when given."""

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

    reg = gpm.GPMBases()
    reg.bind(Model())
    if basis is not None:
        reg.grow("basis__0", basis)
        reg.loaded()
    return reg


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("k", [2, 5], ids=["narrow", "wide"])
@pytest.mark.parametrize("shape", [(3, 6), (1, 3, 6)], ids=["2d", "3d"])
def test_gpm_input_side_projection_equals_the_projected_gradient(bias, k, shape):
    """The backward of `_ProjectedLinear` (inputs projected, N = 3 < out = 5) against numpy float64: the plain
    gradients, [∇W, ∇b] − [∇W, ∇b]·M·Mᵀ, and ∇a unchanged."""
    torch.manual_seed(3)
    lin = nn.Linear(6, 5, bias=bias).double()
    d = 6 + bias
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
    M = q[:, :k].contiguous()
    reg = one_layer_bases(lin, M)
    reg.install()
    a = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    r = torch.randn(*shape[:-1], 5, dtype=torch.float64)
    (lin(a) * r).sum().backward()
    assert reg._input_side == {0} and not reg._plain  # the backward projected it
    grad_w = lin.weight.grad.clone()
    reg.project()  # skips the layer: its gradient is already projected
    assert torch.equal(lin.weight.grad, grad_w)
    reg.uninstall()
    assert "forward" not in lin.__dict__

    A, R, W = a.detach().numpy().reshape(-1, 6), r.numpy().reshape(-1, 5), lin.weight.detach().numpy()
    full = R.T @ A
    if bias:
        full = np.hstack([full, R.sum(0)[:, None]])
    Mn = M.numpy()
    expected = full - full @ Mn @ Mn.T
    got = lin.weight.grad.numpy() if not bias else np.hstack([lin.weight.grad.numpy(), lin.bias.grad.numpy()[:, None]])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.grad.numpy().reshape(-1, 6), R @ W, rtol=1e-12)


def test_gpm_projects_on_the_gradient_when_the_batch_is_not_smaller_than_the_layer():
    torch.manual_seed(4)
    lin = nn.Linear(4, 3)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    reg = one_layer_bases(lin, q[:, :2].contiguous())
    reg.install()
    lin(torch.randn(3, 4)).sum().backward()  # N = 3 = out: the plain forward, projected on .grad after
    assert reg._plain == {0} and not reg._input_side
    reg.project()
    full = torch.cat([lin.weight.grad, lin.bias.grad[:, None]], 1)
    assert float((full @ reg.basis(0)).abs().max()) < 1e-6


def test_gpm_update_is_orthogonal_with_inputs_projected_in_the_backward(tmp_path, monkeypatch):
    """Batch 8 < the hidden layer's 64 outputs: that layer is projected in its backward, the head (2 outputs)
    on its gradient; the step is orthogonal to every basis either way."""
    calls, original = [], gpm._ProjectedLinear

    class Counting(original):
        @staticmethod
        def forward(ctx, *args):
            calls.append(1)
            return original.forward(ctx, *args)

    monkeypatch.setattr(gpm, "_ProjectedLinear", Counting)
    check = OrthogonalityCheck()
    r = runner(tmp_path, ["method=gpm", "scenario.incremental=domain", "method.threshold=0.9",
                          "model.hidden=[64]", "train.batch_size=8"], [check])
    r.run()
    assert check.checked == 2 * 6 and len(calls) == check.checked  # every later step: one input-side layer
    assert check.worst < 1e-5, check.worst
    assert not any("forward" in m.__dict__ for _, m in r.module.regularizer.layers)  # removed at the end


def test_gpm_clips_the_projected_gradient_whichever_path_projects_it(tmp_path, monkeypatch):
    """Batch 8 < the hidden layer's 40 outputs: projected in its backward; the same run with the input-side form
    switched off projects every layer on `.grad`. Both are clipped after the projection (the clipped norm is the
    projected gradient's), so the two runs train the same weights; the clip binds (an unclipped run differs)."""
    over = ["method=gpm", "method.threshold=0.9", "model.hidden=[40]", "train.batch_size=8", "optimizer=sgd",
            "optimizer.lr=0.5", "scenario.incremental=class"]

    def weights(folder, clip, input_side=True):
        with monkeypatch.context() as patch:
            if not input_side:
                patch.setattr(gpm.GPMBases, "install", lambda self: None)
            r = runner(tmp_path / folder, [*over, f"trainer.gradient_clip_val={clip}"])
            r.run()
        return {k: v.clone() for k, v in r.model.state_dict().items()}

    inside, on_grad, unclipped = weights("inside", 0.01), weights("grad", 0.01, False), weights("free", 1e9)
    for k in inside:
        torch.testing.assert_close(inside[k], on_grad[k], rtol=0, atol=1e-6)
    assert max(float((inside[k] - unclipped[k]).abs().max()) for k in inside) > 1e-3


def test_gpm_wide_basis_uses_the_projector_with_the_same_result():
    torch.manual_seed(1)
    lin = nn.Linear(6, 3)
    reg = one_layer_bases(lin)
    for k in (2, 6):  # narrow (two products) and wide (the d × d projector): the same projection
        q, _ = torch.linalg.qr(torch.randn(7, 7))
        reg.grow("basis__0", q[:, :k].contiguous())
        reg.loaded()
        g, b = torch.randn(3, 6), torch.randn(3)
        lin.weight.grad, lin.bias.grad = g.clone(), b.clone()
        reg.project()
        full = torch.cat([g, b[:, None]], 1)
        expected = full - full @ q[:, :k] @ q[:, :k].T
        torch.testing.assert_close(torch.cat([lin.weight.grad, lin.bias.grad[:, None]], 1), expected)


# ------------------------------------------------------------------------------ OGD


def test_ogd_gram_schmidt_equals_a_least_squares_projection():
    rng = np.random.default_rng(2)
    P = 30
    first = rng.normal(size=(5, P))
    second = np.vstack([rng.normal(size=(3, P)), first[:2].sum(0, keepdims=True) * 2])  # last: dependent
    S = ogd.gram_schmidt(torch.zeros(0, P, dtype=torch.float64), torch.from_numpy(first))
    S = torch.cat([S, ogd.gram_schmidt(S, torch.from_numpy(second))])
    assert S.shape == (8, P)  # the dependent vector was dropped
    np.testing.assert_allclose((S @ S.T).numpy(), np.eye(8), atol=1e-12)
    g = rng.normal(size=P)
    A = np.vstack([first, second]).T  # P × 9, rank 8
    coef, *_ = np.linalg.lstsq(A, g, rcond=None)
    residual = g - A @ coef  # g minus its projection onto the span of every stored gradient
    projected = torch.from_numpy(g) - (S @ torch.from_numpy(g)) @ S
    np.testing.assert_allclose(projected.numpy(), residual, atol=1e-10)
    q, _ = np.linalg.qr(A[:, :8])  # and against a QR basis of the same span
    np.testing.assert_allclose(projected.numpy(), g - q @ (q.T @ g), atol=1e-10)


def test_ogd_directions_are_the_ground_truth_logits_gradients():
    """A linear model f = W x + b: ∇_W f_y = e_y xᵀ, ∇_b f_y = e_y (no autograd in the expectation)."""
    torch.manual_seed(3)

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 3)

        def forward(self, x, t=None):
            return self.head(x)

    model = Linear()
    x, y = torch.randn(5, 4), torch.tensor([0, 2, 1, 2, 0])
    got = ogd.ground_truth_gradients(model, list(model.parameters()), x, y, torch.zeros(5, dtype=torch.long))
    for i in range(5):
        e = torch.zeros(3)
        e[y[i]] = 1
        torch.testing.assert_close(got[i], torch.cat([torch.outer(e, x[i]).reshape(-1), e]))


# ------------------------------------------------------------------------------ A-GEM


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_agem_projection_closed_form(sign):
    rng = np.random.default_rng(4)
    g_ref = rng.normal(size=20)
    g = rng.normal(size=20)
    g = g - (g @ g_ref) / (g_ref @ g_ref) * g_ref + sign * 0.3 * g_ref  # g·g_ref has the sign `sign`
    got = agem.agem_project(torch.from_numpy(g), torch.from_numpy(g_ref)).numpy()
    if sign > 0:  # no conflict: unchanged
        np.testing.assert_array_equal(got, g)
    else:  # the orthogonal projection onto the hyperplane g_ref⊥, as a matrix
        P = np.eye(20) - np.outer(g_ref, g_ref) / (g_ref @ g_ref)
        np.testing.assert_allclose(got, P @ g, atol=1e-12)
        assert abs(got @ g_ref) < 1e-12


class AGEMCheck(pl.Callback):
    """After A-GEM's projection: the step's gradient against the same memory batch's gradient is ≥ 0."""

    def __init__(self, method):
        self.method, self.worst, self.checked = method, 0.0, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        reg = pl_module.regularizer
        if len(reg.y):
            r = torch.cat([v.reshape(-1) for v in self.method.reference_gradient(trainer, pl_module)])
            g = torch.cat([p.grad.reshape(-1) for p in reg.params])
            self.worst = min(self.worst, float(g @ r / (g.norm() * r.norm())))
            self.checked += 1


@pytest.mark.parametrize("incremental", ["class", "task"])
def test_agem_runs_and_never_increases_the_memory_loss_to_first_order(tmp_path, incremental):
    cfg = compose([*TINY, "method=agem", f"scenario.incremental={incremental}", "method.memory_per_experience=7",
                   "method.memory_batch_size=5", *(["model.multihead=true"] if incremental == "task" else [])])
    parts = validate(cfg)
    check = AGEMCheck(parts.method_callbacks[0])
    results = StreamRunner(cfg, tmp_path, parts=parts, extra_callbacks=[check]).run()
    assert check.checked == 2 * 6 and check.worst > -1e-5, check.worst
    state = results["method_state"]
    x_bytes = 7 * 3 * 64 * 4  # 8×8 digits, float32
    assert state["samples"] == [7, 7, 7] and state["memory_samples"] == 21
    assert state["bytes"] == x_bytes + 2 * 21 * 8  # inputs + labels + task ids (int64)


def test_ogd_runs_and_reports_its_directions(tmp_path):
    r = runner(tmp_path, ["method=ogd", "scenario.incremental=task", "model.multihead=true",
                          "method.memory_per_experience=6"])
    state = r.run()["method_state"]
    P = sum(p.numel() for n, p in r.model.named_parameters() if not n.startswith("heads."))  # heads left out
    assert state["samples"] == [6, 6, 6] and state["directions"] == [6, 6, 6] and state["floats_per_direction"] == P
    assert state["bytes"] == 18 * P * 4
    S = r.module.regularizer.directions
    torch.testing.assert_close(S @ S.T, torch.eye(18), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ resume


@pytest.mark.parametrize("method", [["method=gpm"], ["method=ogd", "method.memory_per_experience=5"],
                                    ["method=agem", "method.memory_per_experience=5", "method.memory_batch_size=4"]],
                         ids=["gpm", "ogd", "agem"])
def test_stopped_run_resumes_to_identical_results(tmp_path, method):
    """Stopped inside experience 2 (steps 12..18) after its checkpoint at its step 3 (15): the bases, the
    directions, the memory come back from the stream checkpoint with their grown shapes."""
    over = [*method, "optimizer=adam", "optimizer.lr=0.01", "trainer.checkpoint_every_n_steps=3",
            "scenario.incremental=class"]
    full = runner(tmp_path / "full", over).run()
    with pytest.raises(Stop):
        runner(tmp_path / "stopped", over, [StopAt(17)]).run()
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "stopped"))
    assert state["steps"] + state["point"]["step"] == 15
    cfg = compose([*TINY, *over])
    resumed = StreamRunner(cfg, tmp_path / "stopped", parts=validate(cfg), resume=state).run()
    assert full["acc_matrix"] == resumed["acc_matrix"] and full["method_state"] == resumed["method_state"]
    a = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "full"))["module"]
    b = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "stopped"))["module"]
    assert a.keys() == b.keys()
    for k in a:  # weights and the method's memory, bit for bit
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------ the step, under every optimizer


class StepCheck(pl.Callback):
    """The change of the constrained weights over each optimizer step (on_before_optimizer_step: the weights
    before it; on_train_batch_end: after it, the constraint's step projection done), against the protected
    subspace: GPM ‖ΔW̄ M‖ / ‖ΔW̄‖ per layer with a basis, OGD ‖S Δθ‖ / ‖Δθ‖ — in float64."""

    def __init__(self):
        self.worst, self.checked, self.before = 0.0, 0, None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        reg = pl_module.regularizer
        if isinstance(reg, gpm.GPMBases):
            self.before = [torch.cat([m.weight.detach().view(m.weight.shape[0], -1), m.bias.detach()[:, None]], 1)
                           .double() for _, m in reg.layers]
        else:
            self.before = torch.cat([p.detach().reshape(-1) for p in reg.params]).double()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        reg = pl_module.regularizer
        if isinstance(reg, gpm.GPMBases):
            for i, (_, m) in enumerate(reg.layers):
                M = reg.basis(i).double()
                if not M.shape[1]:
                    continue
                after = torch.cat([m.weight.detach().view(m.weight.shape[0], -1), m.bias.detach()[:, None]], 1)
                delta = after.double() - self.before[i]
                self.worst = max(self.worst, float((delta @ M).norm() / delta.norm()))
                self.checked += 1
        elif reg._k:
            delta = torch.cat([p.detach().reshape(-1) for p in reg.params]).double() - self.before
            self.worst = max(self.worst, float((reg.directions.double() @ delta).norm() / delta.norm()))
            self.checked += 1


OPTIMIZERS = {  # the optimizer's state carried over the boundaries (train.reset_optimizer=false)
    "sgd-momentum": ["optimizer=sgd", "optimizer.momentum=0.9"],
    "sgd-nesterov-decay": ["optimizer=sgd", "optimizer.momentum=0.9", "+optimizer.nesterov=true",
                           "optimizer.weight_decay=0.01"],
    "sgd-decay": ["optimizer=sgd", "optimizer.weight_decay=0.01"],
    "adam": ["optimizer=adam"],
    "adam-decay": ["optimizer=adam", "optimizer.weight_decay=0.01"],
    "adamw": ["optimizer=adam", "optimizer._target_=torch.optim.AdamW", "optimizer.weight_decay=0.1"],
    "rmsprop": ["optimizer=adam", "optimizer._target_=torch.optim.RMSprop", "~optimizer.betas",
                "+optimizer.momentum=0.9", "optimizer.weight_decay=0.01"],
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("method", [["method=gpm", "method.threshold=0.9"],
                                    ["method=ogd", "method.memory_per_experience=5"]], ids=["gpm", "ogd"])
def test_the_step_of_every_optimizer_leaves_the_protected_subspace_alone(tmp_path, method, optimizer):
    """Adam's per-element scaling, momentum from before the boundary, coupled and decoupled weight decay: the
    weight change of every step has no component in the protected subspace (float32 rounding)."""
    check = StepCheck()
    runner(tmp_path, [*method, *OPTIMIZERS[optimizer], "optimizer.lr=0.01", "train.reset_optimizer=false",
                      "scenario.incremental=class"], [check]).run()
    assert check.checked >= 2 * 6, check.checked  # every step of experiences 1 and 2 (GPM: per layer)
    assert check.worst <= 1e-5, check.worst
