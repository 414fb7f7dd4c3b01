"""The test problems every curvature test uses (docs/design.md, section 9, after curvlinops' `test/cases.py`):
small float64 models, each a `Case` with its inputs, the layers that get Kronecker factors, and the
output masks; no conftest needed —

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_something(case):
        model, x = case.model(), case.inputs()

Each model stands for one path of the per-sample engine (clexp/curvature/engine.py and rules.py): flat
Linear layers, convolutions (unfold and strided-view paths), normalisation layers (torch.func per
module), sequence inputs, SHARED layers (one module called twice per forward), a batch flattened
into rows, tied and parametrized weights and in-place ops (whole-model fallback), an unused head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

MASK = torch.tensor([True, False, True, True, False])  # three allowed outputs of five
TWO = torch.tensor([False, True, False, False, True])  # two allowed outputs: one Hessian factor
MASKS = {"all": None, "mask3": MASK, "mask2": TWO}
Y = torch.tensor([0, 2, 3, 0, 2, 3, 3, 0, 2])  # labels of 9 inputs, inside MASK
Y_TWO = torch.tensor([1, 4] * 4 + [1])  # inside TWO


def labels(mask: torch.Tensor | None, n: int = 9) -> torch.Tensor:
    """Dataset labels of n inputs that the mask allows."""
    base = Y_TWO if mask is TWO else Y
    return base.repeat(-(-n // len(base)))[:n]


def seeded(make: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return make().double()


# ------------------------------------------------------------------------------------------- models


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 5))


def mlp_partial_bias() -> nn.Module:
    """One layer without a bias between two with one."""
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 4, bias=False), nn.ReLU(),
                         nn.Linear(4, 5))


def cnn(bias: bool = True) -> nn.Module:
    """Convolutions through `unfold` (fewer than 8 input channels), one with stride 2."""
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=bias), nn.ReLU(),
                         nn.Conv2d(4, 3, 3, stride=2, padding=1, bias=bias), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 3 * 3, 5, bias=bias))


def norms() -> nn.Module:
    """BatchNorm2d and LayerNorm: the torch.func path (BatchNorm statistics made non-trivial)."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.LayerNorm(27),
                          nn.Linear(27, 5))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1), model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 2), model[1].bias.uniform_(-1, 1)
        model[4].weight.uniform_(0.5, 2), model[4].bias.uniform_(-1, 1)
    return model


class WideCNN(nn.Module):
    """Convolutions with ≥ 8 input channels and stride 1 (the strided-view path): c2 SHARED (called
    twice), c3 with a rectangular dilated kernel and unequal padding."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 3, (3, 2), padding=(0, 2), dilation=(1, 2))
        self.out = nn.Linear(3 * 3 * 7, 5)

    def forward(self, x):
        h = torch.relu(self.c2(torch.relu(self.c2(torch.relu(self.c1(x))))))
        return self.out(torch.tanh(self.c3(h)).flatten(1))


class Sequence(nn.Module):
    """A Linear on N × L × D inputs (per-sample gradient: a sum over positions) and `mix`, SHARED."""

    def __init__(self):
        super().__init__()
        self.proj, self.mix, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 5)

    def forward(self, x):
        h = torch.relu(self.proj(x.reshape(len(x), 3, 4))).mean(1)
        return self.out(self.mix(torch.tanh(self.mix(h))))


class Flattened(nn.Module):
    """A Linear applied to the batch flattened into (N·L) × D rows (dim 0 is not the samples): the
    diagonal Fisher's whole-model fallback; Kronecker factors from the rows."""

    def __init__(self):
        super().__init__()
        self.rows, self.out = nn.Linear(4, 6), nn.Linear(6, 5)

    def forward(self, x):
        h = torch.tanh(self.rows(x.reshape(-1, 4))).reshape(len(x), 3, 6).mean(1)
        return self.out(h)


class Custom(nn.Module):
    """A module's own parameter next to its children, in-place ReLU, an Embedding, tied weights."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 6))
        self.emb = nn.Embedding(4, 6)
        self.a, self.b = nn.Linear(12, 6), nn.Linear(6, 6)
        self.tied = nn.Linear(6, 6)
        self.tied.weight = self.b.weight  # one parameter in two modules
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        h = torch.relu_(self.a(x)) * self.scale + self.emb((x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long())
        h = torch.tanh(self.b(h))
        return self.head(torch.tanh(self.tied(h)))


def reparametrized() -> nn.Module:
    """Weights computed from other parameters: new-style parametrization and old-style weight_norm."""
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    with pytest.warns(FutureWarning):
        old_style = torch.nn.utils.weight_norm(nn.Linear(6, 5))
    return nn.Sequential(parametrizations.weight_norm(nn.Linear(12, 6)), nn.Tanh(), old_style).double()


class MultiHead(nn.Module):
    """Task-IL style: two heads, only head 0 used by `forward(x)` (head 1 has no gradient signal)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Dropout(0.5))
        self.heads = nn.ModuleList([nn.Linear(6, 5), nn.Linear(6, 5)])

    def forward(self, x):
        return self.heads[0](self.body(x))


class Keywords(nn.Module):
    """A Linear called with a keyword argument: the hooks cannot read its input."""

    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(12, 6), nn.Linear(6, 5)

    def forward(self, x):
        return self.out(torch.tanh(self.a(input=x)))


class SharedClassifier(nn.Module):
    """The model contract of clexp (`forward(x, task=None)`, `active_task`) with a SHARED Linear (called
    twice), a LayerNorm (no Kronecker factors: diagonal fallback) and a single head."""

    def __init__(self, n_in: int = 8, hidden: int = 6, n_out: int = 4):
        super().__init__()
        self.active_task = 0
        self.inp, self.shared = nn.Linear(n_in, hidden), nn.Linear(hidden, hidden)
        self.norm, self.head = nn.LayerNorm(hidden), nn.Linear(hidden, n_out)

    def forward(self, x, task=None):
        h = torch.tanh(self.inp(x.flatten(1)))
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))
        return self.head(self.norm(h))


# -------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """A test problem: `model()` (float64, seeded), `inputs(n)` (seeded), and what to expect."""

    id: str
    make: Callable[[], nn.Module]
    shape: tuple[int, ...]  # one input's shape
    factored: tuple[str, ...] = ()  # the layers `hooked_layers` gives Kronecker factors, by name
    shared: tuple[str, ...] = ()  # layers called more than once per forward

    def model(self) -> nn.Module:
        return seeded(self.make)

    def inputs(self, n: int = 9, seed: int = 1) -> torch.Tensor:
        return torch.randn(n, *self.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def __str__(self) -> str:
        return self.id


IMAGE = (2, 5, 5)
CASES = [
    Case("mlp", mlp, (12,), ("1", "3", "5")),
    Case("mlp_partial_bias", mlp_partial_bias, (12,), ("1", "3", "5")),
    Case("cnn", cnn, IMAGE, ("0", "2", "5")),
    Case("cnn_nobias", lambda: cnn(False), IMAGE, ("0", "2", "5")),
    Case("cnn_wide", WideCNN, IMAGE, ("c1", "c2", "c3", "out"), shared=("c2",)),
    Case("norms", norms, IMAGE, ("0", "5")),
    Case("seq", Sequence, (12,), ("proj", "mix", "out"), shared=("mix",)),
    Case("flattened", Flattened, (12,), ("rows", "out")),
    Case("custom", Custom, (12,), ("a", "head")),  # b and tied share a weight: diagonal
    Case("reparametrized", reparametrized, (12,), ()),  # computed weights: diagonal
    Case("multihead", MultiHead, (12,), ("body.0", "heads.0", "heads.1")),  # heads.1 unused
]
BY_ID = {c.id: c for c in CASES}
KEYWORDS = Case("keywords", Keywords, (12,), ("a", "out"))
SHARED_CLASSIFIER = Case("shared_classifier", SharedClassifier, (8,), ("inp", "shared", "head"), shared=("shared",))
