"""clexp: continual-learning experiments with regularization methods on Lightning and Hydra."""

__version__ = "0.1.0"
