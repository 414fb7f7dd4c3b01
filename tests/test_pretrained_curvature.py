"""The diagonal Fisher and KFAC on a torchvision ViT (random weights, tiny): every parameter against the
per-sample, per-class float64 oracle — attention's in-projection and its out_proj (whose weights
nn.MultiheadAttention reads directly, never calling the module), LayerNorm, the class token and the
position embedding through the per-sample fallback —, KFAC's factors for the Linear / Conv2d layers and
the diagonal for the rest, and a parent that reads a child's weight directly (the runtime check)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from clexp.curvature import diag_fisher
from clexp.curvature.engine import fisher_paths
from clexp.curvature.kronecker import hooked_layers, kfac_factors
from clexp.methods.kfac_ewc import KroneckerPenalty
from tests import oracles


def tiny_vit():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8,
                            num_classes=3).double()
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts it at zero: every other gradient would be 0
    return vit, torch.randn(3, 3, 8, 8, dtype=torch.float64)


def test_exact_fisher_of_a_vit_matches_the_oracle():
    vit, x = tiny_vit()
    ours, theirs = diag_fisher(vit, x, chunk_size=2), oracles.fisher(vit, x)
    assert oracles.rel_err(ours, theirs) < 1e-10
    out_proj = "encoder.layers.encoder_layer_0.self_attention.out_proj.weight"
    assert theirs[out_proj].norm() > 0
    paths = fisher_paths(vit, x)
    assert paths["encoder.layers.encoder_layer_0.mlp.0.weight"] == "linear"
    assert paths["conv_proj.weight"] == "conv"
    assert paths[out_proj] == paths["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"] == \
        "per-module: MultiheadAttention"
    assert paths["class_token"] == "per-module: VisionTransformer"
    assert paths["encoder.ln.weight"] == "per-module: LayerNorm"


def test_kfac_on_a_vit_factors_linear_and_conv_and_leaves_the_rest_to_the_diagonal():
    vit, x = tiny_vit()
    layers = set(hooked_layers(vit))
    assert "conv_proj" in layers and "heads.head" in layers
    assert not any("self_attention" in n for n in layers)  # MultiheadAttention: diagonal
    factors = kfac_factors(vit, x)
    assert set(factors) == layers
    penalty = KroneckerPenalty(1.0)
    penalty.bind(vit)
    covered = {f"{layer}.{leaf}" for layer in penalty.layers
               for leaf, _ in vit.get_submodule(layer).named_parameters(recurse=False)}
    assert covered | set(penalty.diag.names) == {n for n, _ in vit.named_parameters()}
    assert "encoder.layers.encoder_layer_0.self_attention.out_proj.weight" in penalty.diag.names


class ReadsChildWeight(nn.Module):
    """A parent that uses its child's weight without calling the child."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 3)

    def forward(self, x):
        return F.linear(torch.tanh(x), self.inner.weight, self.inner.bias)


def test_weights_read_outside_their_module_are_not_missed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), ReadsChildWeight()).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    assert oracles.rel_err(diag_fisher(model, x), oracles.fisher(model, x)) < 1e-10
    with pytest.raises(ValueError, match="used outside the layer's own forward"):
        kfac_factors(model, x)
