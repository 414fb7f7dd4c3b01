"""Curvature and sensitivity of a model's outputs, per sample, without Lightning.

- `per_sample`: the engine — forward hooks, per-layer rules (Linear, Conv2d, a `torch.func`
  fallback for anything else), chunks that bound memory, sums reduced across processes;
- `fisher`: the diagonal Fisher (exact, sampled, empirical, batch);
- `sensitivity`: MAS's mean per-sample |∂‖f(x)‖²/∂θ|;
- `kronecker`: Kronecker factors A, G of Linear / Conv2d layers (KFAC / KFC);
- `distributed`: the cross-process sums.
"""

from clexp.curvature.fisher import FISHER_VARIANTS, diag_fisher
from clexp.curvature.kronecker import kfac_diagonal, kfac_factors
from clexp.curvature.per_sample import eval_mode
from clexp.curvature.sensitivity import mas_importance

__all__ = ["FISHER_VARIANTS", "diag_fisher", "eval_mode", "kfac_diagonal", "kfac_factors", "mas_importance"]
