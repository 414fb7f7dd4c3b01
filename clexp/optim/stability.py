"""Can SGD follow the penalty? A warning when a quadratic penalty is stiffer than the step size allows.

On a quadratic with curvature h, plain SGD is stable only while lr·h < 2; heavy-ball momentum β
(torch's SGD) raises the limit to 2(1+β), Nesterov's form to 2(1+β)/(1+2β); weight decay adds to h.
A consolidated penalty whose largest curvature (λ·max F for EWC, 2c·max Ω for SI, ...) passes the
limit makes SGD oscillate along that direction with growing amplitude: the loss rarely becomes NaN
(ReLUs die first), the model collapses to one output instead. EWC after one short epoch is the
common case (an uncertain model has a large Fisher): with lr 0.05 and λ = 100, lr·λ·max F ≈ 3 on
Split Digits, domain-IL, where the run ends at chance. The check runs once per experience, on the
penalty's own numbers; other optimizers (Adam, natural gradient) bound their steps differently and
are not checked.
"""

from __future__ import annotations

import torch


def sgd_limit(optimizer: torch.optim.Optimizer) -> tuple[float, float] | None:
    """(the largest curvature SGD is stable on, lr) for a torch SGD optimizer (its first parameter
    group), or None for another optimizer."""
    if type(optimizer) is not torch.optim.SGD or not optimizer.param_groups:
        return None
    group = optimizer.param_groups[0]
    lr, beta = float(group["lr"]), float(group.get("momentum", 0.0))
    if lr <= 0:
        return None
    limit = 2 * (1 + beta) / (1 + 2 * beta) if group.get("nesterov") else 2 * (1 + beta)
    return limit / lr - float(group.get("weight_decay", 0.0)), lr


def instability(curvature: float | None, optimizer: torch.optim.Optimizer, strength_key: str,
                strength: float) -> str | None:
    """The warning to print when SGD cannot follow a penalty of largest curvature `curvature` (None: fine)."""
    bound = sgd_limit(optimizer)
    if curvature is None or bound is None or curvature <= 0:
        return None
    limit, lr = bound
    if curvature <= limit:
        return None
    safe = strength * limit / curvature
    return (f"the penalty is stiffer than SGD can follow: its largest curvature is {curvature:.3g}, SGD at lr {lr:g} "
            f"is stable only below {limit:.3g} (lr·curvature {lr * curvature:.2g} > {lr * limit:.2g}); it will "
            f"oscillate and the model may collapse to one output. Use {strength_key} < {safe:.3g}, a smaller "
            f"optimizer.lr, or optimizer=adam")
