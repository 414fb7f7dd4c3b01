"""Only the package list; everything else about the project is in pyproject.toml.

pyproject.toml's `packages = {find = ...}` cannot take one extra package, and the configs are one: the
top-level conf/ becomes `clexp.conf` in the wheel (`package-dir` / `package-data` in pyproject.toml). Its
sub-folders are listed too, as the data-only packages setuptools expects them to be. `hydra_plugins.clexp_optuna`
is the one module Hydra's plugin rules need outside `clexp`.
"""

from setuptools import find_namespace_packages, setup

CODE = find_namespace_packages(include=["clexp", "clexp.*"], exclude=["*__pycache__"])
# Hydra loads sweepers only from its `hydra_plugins` namespace (clexp's resumable Optuna sweeper)
PLUGINS = ["hydra_plugins.clexp_optuna"]
CONF = ["clexp.conf", *(f"clexp.conf.{name}" for name in find_namespace_packages("conf", exclude=["*__pycache__"]))]

setup(packages=[*CODE, *PLUGINS, *CONF])
