"""The curvature engine's per-layer routing (clexp/curvature/sites.py): a module's rule kind comes from a
registry by module type, subclasses inherit it, and a registered custom layer gets the fast rule with
the same exact Fisher as the brute-force loop."""

import torch
import torch.nn.functional as F
from torch import nn

from clexp.curvature import diag_fisher, sites
from clexp.curvature.engine import fisher_paths
from clexp.curvature.sites import CONV, LINEAR, LOCAL, register_kind, site_kind
from tests import oracles


class Affine(nn.Module):
    """A Linear layer written by hand: weight and bias, called as layer(x) on N × in."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
        self.bias = nn.Parameter(torch.randn(n_out) * 0.1)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def test_kinds_follow_the_module_type_and_its_subclasses():
    class MyLinear(nn.Linear):
        pass

    assert site_kind(nn.Linear(3, 2)) == LINEAR and site_kind(MyLinear(3, 2)) == LINEAR
    assert site_kind(nn.Conv2d(2, 4, 3, padding=1)) == CONV
    assert site_kind(nn.Conv2d(2, 4, 3, groups=2)) == LOCAL  # grouped: not the conv rule's case
    assert site_kind(nn.Conv2d(2, 4, 3, padding="same")) == LOCAL
    assert site_kind(nn.LayerNorm(4)) == LOCAL and site_kind(Affine(3, 2)) == LOCAL


def test_a_registered_layer_takes_the_linear_rule_and_stays_exact(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(Affine(6, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    x = torch.randn(9, 6, dtype=torch.float64)
    before = diag_fisher(model, x)
    assert fisher_paths(model, x)["0.weight"] == "per-module: Affine"
    monkeypatch.setattr(sites, "KIND_REGISTRY", dict(sites.KIND_REGISTRY))  # the registration undone after the test
    register_kind(Affine, LINEAR)
    assert fisher_paths(model, x)["0.weight"] == "linear"
    after = diag_fisher(model, x)
    assert oracles.rel_err(after, oracles.fisher(model, x)) < 1e-10
    assert oracles.rel_err(after, before) < 1e-10
