"""clexp: continual-learning experiments with regularization methods on Lightning and Hydra.

`clexp.run(overrides=[...], config_dir=None)` runs one experiment from Python and returns its
results dict; the `clexp` command is the same path for the command line.
"""

from clexp.config.about import VERSION as __version__  # noqa: F401 - the package's version
from clexp.core.naming import register as _register_resolvers

_register_resolvers()


def run(overrides=(), config_dir=None) -> dict:
    """See `clexp.train.run` (imported lazily: `import clexp` stays light)."""
    from clexp.train import run as _run

    return _run(overrides, config_dir)
