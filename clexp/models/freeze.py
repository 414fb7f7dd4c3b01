"""Which parameters train: `model.trainable` = all | head | last:K, and the one place that says which
parameters are trainable (`trainable_parameters`: `requires_grad`).

A frozen parameter (`requires_grad=False`) gets no optimizer state (the optimizer is built from
`trainable_parameters`), no penalty buffers (the quadratic penalties bind to it), and no importance:
the Fisher, MAS and KFAC estimators enumerate the same parameters, and the backward passes stop
where the first trainable layer starts.

Blocks (for `last:K`), per family:

- torchvision: the outermost modules of a block class, in registration order (which is the order of
  the forward for every torchvision classifier): ResNet / ResNeXt / Wide ResNet `BasicBlock`,
  `Bottleneck`; ViT `EncoderBlock`; Swin `SwinTransformerBlock(V2)`; ConvNeXt `CNBlock`;
  EfficientNet `MBConv`, `FusedMBConv`; MobileNet V2 / V3 and ShuffleNet V2 `InvertedResidual`;
  MNASNet `_InvertedResidual`; RegNet `ResBottleneckBlock`; DenseNet `_DenseLayer`; GoogLeNet and
  Inception v3 `Inception*`; SqueezeNet `Fire`; MaxViT `MaxVitLayer`. A family with none of these
  (VGG, AlexNet) counts each Conv2d / Linear layer as a block.
- timm: the model's own `group_matcher()` groups (timm's layer-wise grouping, e.g. `layer1.0`,
  `blocks.3`, `stages.1.blocks.2`), minus the stem group.

`last:K` trains the last K blocks and everything after the first of them (downsampling between
them, the final norm, the pooling), plus the head(s); the stem and the earlier blocks are frozen.
Modules whose parameters are all frozen run in eval mode (BatchNorm statistics fixed, dropout and
stochastic depth off): a frozen part is a fixed function.
"""

from __future__ import annotations

import re

from torch import nn

from clexp.config.errors import ConfigError

BLOCK_CLASSES = frozenset({
    "BasicBlock", "Bottleneck", "EncoderBlock", "SwinTransformerBlock", "SwinTransformerBlockV2", "CNBlock",
    "MBConv", "FusedMBConv", "InvertedResidual", "_InvertedResidual", "ResBottleneckBlock", "_DenseLayer",
    "Inception", "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE", "Fire", "MaxVitLayer",
})
FORMS = "all, head, or last:K (K >= 1: the last K blocks, the head(s) and everything between them)"


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that train, by name: those with `requires_grad`. The optimizer, the penalties and
    the importance estimators all take their parameters from here."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def parse_trainable(value) -> tuple[str, int | None]:
    """`all` → ("all", None); `head` → ("head", None); `last:K` → ("last", K). Anything else: ConfigError."""
    text = str(value).strip() if isinstance(value, str) else None
    if text in ("all", "head"):
        return text, None
    match = re.fullmatch(r"last:(\d+)", text or "")
    if match and int(match.group(1)) >= 1:
        return "last", int(match.group(1))
    raise ConfigError("model.trainable", value, FORMS)


# ------------------------------------------------------------------------------------------ the blocks


def torchvision_layer_ids(backbone: nn.Module) -> tuple[dict[str, int], int, str]:
    """{parameter name: layer id} for a torchvision backbone: 0 for the stem, i for the parameters from
    the start of block i (1-based) up to the next block; the number of blocks; what a block is."""
    outer: list[str] = []
    for name, m in backbone.named_modules():
        if type(m).__name__ in BLOCK_CLASSES and not any(name.startswith(o + ".") for o in outer):
            outer.append(name)
    what = ", ".join(sorted({type(backbone.get_submodule(o)).__name__ for o in outer}))
    if not outer:  # VGG, AlexNet: every layer with weights is a block
        outer = [n for n, m in backbone.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                 and any(p.numel() for p in m.parameters(recurse=False))]
        what = "Conv2d / Linear layer"
    starts = set(outer)
    ids, current = {}, 0
    block_of = {}  # the block each module lies in (None: outside every block)
    for name, _ in backbone.named_modules():
        if name in starts:
            current += 1
        block_of[name] = current
    for pname, _ in backbone.named_parameters():
        owner = pname.rsplit(".", 1)[0] if "." in pname else ""
        ids[pname] = block_of.get(owner, 0)
    return ids, len(outer), what


def timm_layer_ids(backbone: nn.Module) -> tuple[dict[str, int], int, str]:
    """{parameter name: layer id} from timm's `group_matcher` (0: the stem group); the number of block
    groups; what a block is."""
    from timm.models._manipulate import group_with_matcher

    matcher = backbone.group_matcher(coarse=False)
    groups = group_with_matcher(backbone.named_parameters(), matcher, reverse=True)  # name → group id
    specs = matcher.get("blocks") if isinstance(matcher, dict) else None
    patterns = [re.compile(specs)] if isinstance(specs, str) else \
        [re.compile(p) for p, suffix in (specs or []) if suffix is None]
    block_groups = sorted({g for n, g in groups.items() if any(p.match(n) for p in patterns)}) if patterns \
        else sorted(set(groups.values()))[1:]
    first = block_groups[0] if block_groups else max(groups.values(), default=0) + 1
    ids = {}
    for n, g in groups.items():  # renumber: 0 for everything before the first block, then 1..B
        ids[n] = 0 if g < first else 1 + sum(1 for b in block_groups if b <= g) - 1
    return ids, len(block_groups), "group of timm's group_matcher"


def freeze(backbone: nn.Module, layer_ids: dict[str, int], n_blocks: int, what: str,
           trainable: str, arch: str) -> None:
    """Set `requires_grad` on `backbone`'s parameters for `trainable` (the head(s) always train)."""
    kind, k = parse_trainable(trainable)
    if kind == "all":
        return
    if kind == "last" and k > n_blocks:
        raise ConfigError("model.trainable", trainable,
                          f"{arch} has {n_blocks} blocks (a block: {what}): last:1 … last:{n_blocks}, head or all")
    first = n_blocks - k + 1 if kind == "last" else n_blocks + 1  # the first trainable layer id
    for name, p in backbone.named_parameters():
        p.requires_grad_(layer_ids.get(name, 0) >= first)


def frozen_subtrees(root: nn.Module) -> list[nn.Module]:
    """The largest submodules of `root` whose parameters are all frozen and that hold parameters or
    buffers (parameter-free layers such as ReLU or Dropout at the top level keep the model's mode)."""
    out: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        params = list(m.parameters())
        if (params or list(m.buffers())) and not any(p.requires_grad for p in params):
            out.append(m)
            return
        for child in m.children():
            visit(child)

    for child in root.children():
        visit(child)
    return out


def count(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters), in elements."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in trainable_parameters(model).values())


__all__ = ["BLOCK_CLASSES", "FORMS", "count", "freeze", "frozen_subtrees", "parse_trainable",
           "timm_layer_ids", "torchvision_layer_ids", "trainable_parameters"]
