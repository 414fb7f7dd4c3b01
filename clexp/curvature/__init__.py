"""Curvature and sensitivity of a model's outputs, per sample, without Lightning.

- `per_sample`: the ONE engine — forward hooks on the modules owning parameters, per-layer rules
  (Linear, Conv2d, a `torch.func` fallback for anything else; Kronecker sums for Linear / Conv2d),
  one backward per logit-space vector, chunks that bound memory;
- `fisher`: the diagonal Fisher (exact, sampled, empirical, batch) and `logit_vectors`, the one
  place where the logit-space vectors of the exact / sampled / empirical Fisher are made;
- `sensitivity`: MAS's mean per-sample |∂‖f(x)‖²/∂θ|;
- `kronecker`: Kronecker factors A, G of Linear / Conv2d layers (KFAC / KFC), shared layers included;
- `distributed`: the cross-process sums (the only place that all-reduces).

`fisher`, `sensitivity` and `kronecker` are thin layers: vectors in, engine statistic out.
"""

from clexp.curvature.fisher import FISHER_VARIANTS, diag_fisher
from clexp.curvature.kronecker import kfac_diagonal, kfac_factors
from clexp.curvature.per_sample import eval_mode
from clexp.curvature.sensitivity import mas_importance

__all__ = ["FISHER_VARIANTS", "diag_fisher", "eval_mode", "kfac_diagonal", "kfac_factors", "mas_importance"]
