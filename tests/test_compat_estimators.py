"""The papers' own estimators (compatibility modes, issue 22) against direct float64 loops written here:
the predicted-label Fisher (batch size 1, argmax label), the squared mini-batch gradient with dataset or
predicted labels, MAS's |gradient of the batch mean|, and the normalised (mean, clipped) Fisher of
Maltoni & Lomonaco 2019.

The exact relation between the batch and the empirical Fisher (B inputs per mini-batch, M = N/B
mini-batches, g_n the per-sample gradient of log p(y_n|x_n)):

    B · F_batch = F_empirical + 1/(M·B) · Σ_m Σ_{n≠n' ∈ m} g_n ⊙ g_n'

so B·F_batch is the empirical Fisher plus the within-batch cross terms, and F_batch = F_empirical at B = 1.
"""

import pytest
import torch

from clexp.curvature import diag_fisher, mas_importance
from clexp.methods.ewc import EWCPenalty
from tests.cases import BY_ID, MASKS, labels

CASES = [BY_ID["mlp"], BY_ID["cnn"], BY_ID["norms"]]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny float64 models (tests/conftest.py)


def _params(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _grad(model, scalar):
    params = _params(model)
    grads = torch.autograd.grad(scalar, list(params.values()), allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}


def _logp(model, x, mask):
    z = model(x)
    if mask is not None:
        z = z.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(z, dim=-1)


def _per_sample(model, x, mask, y=None):
    """[g_n]: per-sample gradients of log p(label|x_n), label y_n or (y None) the argmax, one input at a time."""
    model.eval()
    out = []
    for n in range(len(x)):
        logp = _logp(model, x[n : n + 1], mask)[0]
        label = int(logp.argmax()) if y is None else int(y[n])
        out.append(_grad(model, logp[label]))
    return out


def _batches(model, x, mask, b, y=None):
    """[ḡ_m]: gradients of the mini-batch mean of log p(label|x), consecutive batches of b inputs."""
    model.eval()
    out = []
    for s in range(0, len(x), b):
        logp = _logp(model, x[s : s + b], mask)
        label = logp.detach().argmax(1) if y is None else y[s : s + b]
        out.append(_grad(model, logp.gather(1, label.view(-1, 1)).mean()))
    return out


def _mean_sq(grads):
    return {k: torch.stack([g[k] ** 2 for g in grads]).mean(0) for k in grads[0]}


def _close(a, b, tol=1e-10):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=tol, atol=tol), k


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
def test_predicted_fisher_is_the_squared_gradient_of_the_argmax_label(case, mask):
    model, x = case.model(), case.inputs()
    ours = diag_fisher(model, x, variant="predicted", chunk_size=4, output_mask=mask)
    _close(ours, _mean_sq(_per_sample(model, x, mask)))


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
def test_batch_predicted_fisher_squares_the_mini_batch_gradient_of_the_argmax_labels(case, mask):
    model, x = case.model(), case.inputs()  # 9 inputs, B = 4: mini-batches of 4, 4 and 1
    ours = diag_fisher(model, x, variant="batch_predicted", chunk_size=3, output_mask=mask, batch_size=4)
    _close(ours, _mean_sq(_batches(model, x, mask, 4)))
    # B = 1: the predicted Fisher
    _close(diag_fisher(model, x, variant="batch_predicted", output_mask=mask, batch_size=1),
           diag_fisher(model, x, variant="predicted", output_mask=mask))


@pytest.mark.parametrize("variant,predicted", [("batch", False), ("batch_predicted", True)])
def test_b_times_the_batch_fisher_is_the_per_sample_one_plus_the_within_batch_cross_terms(variant, predicted):
    case, mask, B = BY_ID["mlp"], MASKS["mask3"], 4
    model, x = case.model(), case.inputs(n=12)  # M = 3 full mini-batches
    y = None if predicted else labels(mask, 12)
    batch = diag_fisher(model, x, y, variant=variant, output_mask=mask, batch_size=B)
    per_sample = diag_fisher(model, x, y, variant="predicted" if predicted else "empirical", output_mask=mask)
    g = _per_sample(model, x, mask, y)
    M = len(x) // B
    cross = {k: sum(g[i][k] * g[j][k] for m in range(M) for i in range(m * B, m * B + B)
                    for j in range(m * B, m * B + B) if i != j) / (M * B) for k in g[0]}
    _close({k: B * v for k, v in batch.items()}, {k: per_sample[k] + cross[k] for k in per_sample})
    # the cross terms are what separates them: not zero on this model
    assert max(float(c.abs().max()) for c in cross.values()) > 1e-6


def _mas_loop(model, x, mask, b=None, output_mean=False):
    """Mean over inputs (b None) or over mini-batches of b inputs of |∇ mean ‖f‖²| (f masked; or the
    mean of f² over the allowed outputs)."""
    model.eval()
    size = b or 1
    out = []
    for s in range(0, len(x), size):
        f = model(x[s : s + size])
        if mask is not None:
            f = f[:, mask]
        sq = (f ** 2).sum(1) / (f.shape[1] if output_mean else 1)
        out.append({k: v.abs() for k, v in _grad(model, sq.mean()).items()})
    return {k: torch.stack([o[k] for o in out]).mean(0) for k in out[0]}


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
def test_mas_batch_mean_is_the_absolute_gradient_of_the_batch_mean(case, mask):
    model, x = case.model(), case.inputs()
    _close(mas_importance(model, x, chunk_size=3, output_mask=mask, variant="batch_mean", batch_size=4),
           _mas_loop(model, x, mask, 4))
    _close(mas_importance(model, x, output_mask=mask, variant="batch_mean", batch_size=4, output_mean=True),
           _mas_loop(model, x, mask, 4, output_mean=True))
    # per sample: the default, and with the mean over the outputs
    _close(mas_importance(model, x, chunk_size=4, output_mask=mask), _mas_loop(model, x, mask))
    _close(mas_importance(model, x, output_mask=mask, output_mean=True), _mas_loop(model, x, mask, output_mean=True))


def test_mas_batch_mean_is_at_most_the_per_sample_importance():
    case = BY_ID["mlp"]
    model, x = case.model(), case.inputs(n=16)
    per_sample = mas_importance(model, x)
    batched = mas_importance(model, x, variant="batch_mean", batch_size=16)  # |Σ g| ≤ Σ |g|
    assert all(bool((batched[k] <= per_sample[k] + 1e-12).all()) for k in per_sample)
    assert any(bool((batched[k] < per_sample[k] - 1e-6).any()) for k in per_sample)


@pytest.mark.parametrize("bad", [{"variant": "batch_mean"}, {"variant": "nope", "batch_size": 4},
                                 {"variant": "batch_mean", "batch_size": 0}])
def test_mas_variant_arguments_are_checked(bad):
    case = BY_ID["mlp"]
    with pytest.raises(ValueError):
        mas_importance(case.model(), case.inputs(), **bad)


def _model_and_fishers(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    g = torch.Generator().manual_seed(seed + 1)
    fishers = [{n: torch.rand(p.shape, generator=g) * 2e-3 for n, p in model.named_parameters()} for _ in range(3)]
    return model, fishers


def test_clip_max_is_the_mean_fisher_of_the_experiences_seen_clipped():
    model, fishers = _model_and_fishers()
    pen = EWCPenalty(lam=2.0, clip_max=1e-3)
    pen.bind(model)
    for t, F in enumerate(fishers, start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * t)
        pen.consolidate(F, model)
        hit = total = 0
        for n, p in model.named_parameters():
            mean = sum(f[n] for f in fishers[:t]) / t
            assert torch.allclose(pen.importance(n), mean.clamp(max=1e-3), atol=1e-9)
            assert torch.equal(pen.anchor(n), p.detach())  # the latest parameters
            hit, total = hit + int((mean >= 1e-3).sum()), total + mean.numel()
        assert float(pen.saturated) == pytest.approx(hit / total)
        assert 0 < hit < total  # some weights clip, some do not: the test can tell
    # the penalty itself: (λ/2)·Σ min(F̄, clip)(θ − θ*)² at a moved θ
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    expected = 0.5 * 2.0 * sum((pen.importance(n) * (p.detach() - pen.anchor(n)) ** 2).sum()
                               for n, p in model.named_parameters())
    assert float(pen.value(model)) == pytest.approx(float(expected), rel=1e-5)


def test_clip_max_state_resumes_exactly():
    model, fishers = _model_and_fishers(3)
    a = EWCPenalty(lam=1.0, clip_max=1e-3)
    a.bind(model)
    a.consolidate(fishers[0], model)
    b = EWCPenalty(lam=1.0, clip_max=1e-3)
    b.bind(model)
    b.load_state_dict(a.state_dict())  # the unclipped mean travels in the buffers
    a.consolidate(fishers[1], model)
    b.consolidate(fishers[1], model)
    for n, _ in model.named_parameters():
        assert torch.equal(a.importance(n), b.importance(n))
    assert torch.equal(a.saturated, b.saturated)


def test_without_clip_max_the_penalty_keeps_its_state_keys():
    model, _ = _model_and_fishers()
    pen = EWCPenalty(lam=1.0)
    pen.bind(model)
    assert not any(k.startswith(("mean__", "saturated")) for k in pen.state_dict())


@pytest.mark.parametrize("clip", [0, -1e-3, "x"])
def test_clip_max_must_be_positive(clip):
    with pytest.raises(ValueError):
        EWCPenalty(lam=1.0, clip_max=clip)
