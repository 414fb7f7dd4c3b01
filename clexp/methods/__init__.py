"""One file per method: its regularization term (state in buffers) and the Lightning callback(s)
that feed it. `conf/method/<name>.yaml` points at `clexp/methods/<name>.py` only.

- `base.py`: the `Regularizer` interface and the boundary-time `ImportanceCallback`;
- `quadratic.py`: the shared engine Σ Ω (θ − θ*)² (separate and online consolidation);
- `ewc.py` (EWC, online EWC), `si.py`, `mas.py`, `l2.py`, `lwf.py`, `kfac_ewc.py`;
- `ewcpp.py` (EWC++: the running Fisher) and `rwalk.py` (RWalk: EWC++'s Fisher plus the path score),
  the estimators that need no boundary;
- `gpm.py`, `ogd.py`, `agem.py`: the gradient constraints (no loss term: the step's gradient is projected
  before the optimizer step), on what `projection.py` shares.

`naive` and `joint` have no term: their configs set `regularizer: null` (joint also `joint: true`).
"""
