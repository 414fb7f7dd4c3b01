"""Curvature and sensitivity of a model's outputs, per sample, without Lightning.

- `engine`: the ONE accumulation engine — one backward per logit-space vector, chunks that bound
  memory, the whole-model `torch.func` fallback; on it:
  - `sites`: the modules owning parameters, their forward hooks, and the rule kind of each module
    type (a registry: Linear, Conv2d, anything else);
  - `rules`: the per-layer rules (Linear, Conv2d, `torch.func` on one module; Kronecker sums);
- `batch_gradients`: squared / absolute mini-batch gradients (the public code's estimators, for comparison);
- `fisher`: the diagonal Fisher (exact, sampled, empirical, batch) and `logit_vectors`, the one
  place where the logit-space vectors of the exact / sampled / empirical Fisher are made;
- `sensitivity`: MAS's mean per-sample |∂‖f(x)‖²/∂θ|;
- `kronecker`: Kronecker factors A, G of Linear / Conv2d layers (KFAC / KFC), shared layers included;
- `distributed`: the cross-process sums (the only place that all-reduces).

`fisher`, `sensitivity` and `kronecker` are thin layers: vectors in, engine statistic out.
"""

from clexp.curvature.fisher import FISHER_VARIANTS, diag_fisher
from clexp.curvature.kronecker import kfac_diagonal, kfac_factors
from clexp.curvature.sensitivity import mas_importance
from clexp.curvature.sites import eval_mode

__all__ = ["FISHER_VARIANTS", "diag_fisher", "eval_mode", "kfac_diagonal", "kfac_factors", "mas_importance"]
