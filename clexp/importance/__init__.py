"""Importance estimators: the diagonal Fisher, MAS, SI's path integral."""

from clexp.importance.fisher import FISHER_VARIANTS, diag_fisher
from clexp.importance.mas import mas_importance

__all__ = ["FISHER_VARIANTS", "diag_fisher", "mas_importance"]
