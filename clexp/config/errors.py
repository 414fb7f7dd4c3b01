"""The errors a user's input can cause. Each prints as one line (`clexp: error: ...`) with exit code 2
(3 for a non-finite value). No torch here: the command line reports them before heavy imports."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that is not allowed: names the key, the value and what is allowed.

    Objects built from config nodes raise it with their argument's name as `key`; `clexp.core.build`
    rewrites the key to the full config key the user sets (e.g. `lam` → `method.lam`)."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")


class MissingValueError(ConfigError):
    """A mandatory value (`???` in a config) that the command line did not give."""

    def __init__(self, key: str, message: str):
        ValueError.__init__(self, message)
        self.key, self.value, self.allowed = key, "???", message


class DataError(RuntimeError):
    """A dataset that cannot be found, downloaded or decoded; the message says where and how to fix it."""


class NonFiniteError(RuntimeError):
    """The training loss or the regularization term is not finite (exit code 3)."""


def check(cond: bool, key: str, value, allowed: str) -> None:
    """Raise `ConfigError(key, value, allowed)` unless `cond`."""
    if not cond:
        raise ConfigError(key, value, allowed)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(key: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> None:
    """`value` is a number within the given bounds (closed unless `*_open`), or None when `allow_none`."""
    if value is None and allow_none:
        return
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            allowed = f"a number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            allowed = f"a number {'<' if high_open else '<='} {high:g}"
        else:
            allowed = "a number"
        raise ConfigError(key, value, allowed + (" or null" if allow_none else ""))


def check_int(key: str, value, low: int = 1, allow_none: bool = False) -> None:
    """`value` is an integer >= `low` (or None when `allow_none`)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok:
        raise ConfigError(key, value, f"an integer >= {low}" + (" or null" if allow_none else ""))


def check_ints(key: str, value, low: int = 1, one: bool = False) -> None:
    """`value` is a list of integers >= `low` (or, when `one`, a single such integer)."""
    def fits(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    from collections.abc import Sequence  # an OmegaConf ListConfig too

    listed = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    if (one and fits(value)) or (listed and all(fits(v) for v in value)):
        return
    example = f"[{value}]" if fits(value) else f"[{max(low, 1) * 64}]"
    raise ConfigError(key, value, f"a list of integers >= {low}{' or one integer' if one else ''}, e.g. {example}")


def check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(key, value, ", ".join(map(str, choices)))


def one_line(err: BaseException, limit: int = 240) -> str:
    """An exception as one short line; torchvision's multi-line download errors keep only the causes."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    causes = [ln for ln in lines if not ln.startswith(("Error downloading", "Tried "))] or lines
    text = "; ".join(dict.fromkeys(causes)) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
