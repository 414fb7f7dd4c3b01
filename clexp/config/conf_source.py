"""Where clexp's Hydra configs are: inside the installed package, or in the repository's top-level conf/.

The defaults live in one place, the repository's top-level `conf/`. The wheel carries that folder as the
package data `clexp/conf/` (`[tool.setuptools] package-dir` maps `clexp.conf` to `conf/`, see pyproject.toml
and setup.py), so `pip install .` works from any folder. An editable install (`make install`) or a plain
checkout has no `clexp/conf/`: there the configs are read in place from the repository's `conf/`.

Both are given to Hydra as an absolute folder (a `file://` search path), not as `pkg://clexp.conf`: Hydra's
package source only accepts a package that has an `__init__.py` (`ImportlibResourcesConfigSource.available`),
and setuptools' editable finder cannot map a namespace package that lies outside its parent's folder
(pypa/setuptools#4943), so `import clexp.conf` fails in an editable install.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CONFIG_NAME = "config"  # the primary config: conf/config.yaml


def _candidates() -> list[Path]:
    package = Path(str(resources.files("clexp"))).resolve()
    return [
        package / "conf",         # installed wheel: conf/ shipped as package data
        package.parent / "conf",  # editable install or source checkout: the repository's top-level conf/
    ]


def config_dir() -> str:
    """The absolute path of the config folder (for `hydra.main(config_path=...)`, `initialize_config_dir`)."""
    candidates = _candidates()
    for folder in candidates:
        if (folder / f"{CONFIG_NAME}.yaml").is_file():
            return str(folder)
    raise FileNotFoundError(
        f"clexp's configs ({CONFIG_NAME}.yaml) are in none of {', '.join(map(str, candidates))}; "
        "reinstall clexp (`pip install .`, or `make install` in the repository)"
    )


CONFIG_PATH = config_dir()  # what `@hydra.main(config_path=...)` is given
