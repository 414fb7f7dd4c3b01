"""Argument rules that can be checked before torch or Lightning is imported.

A class built from a config node declares the rules of its arguments as a literal class attribute

    ARGS = {"lam": ("number", {"low": 0}), "variant": ("choice", FISHER_VARIANTS), "samples": ("int", {})}

and its constructor applies them (`check_args(ARGS, lam=lam, ...)`, or `rules_of(type(self))` where a
subclass narrows a rule by restating it): the one source of the rules.
`static_rules(target)` reads the same `ARGS` from the module's *source* (with `ast`, following base
classes and imported constants) without executing the module, so that `clexp.core.validation.validate_light`
can report a bad value in a fraction of a second instead of after the ~5 s that importing Lightning
takes. A class without a literal `ARGS` is simply checked later, by its constructor.

A function built from a config node (a model factory) declares its rules the same way, as an attribute
set right after its definition, `MLP.ARGS = {"hidden": ("ints", {})}`, and applies them itself.

Kinds: `number` (`check_number`'s bounds), `int` (`check_int`'s `low`, `allow_none`), `choice` (the allowed
values), `ints` (a list of integers, `check_ints`'s `low`, `one`: a single integer allowed too).
"""

from __future__ import annotations

import ast
import functools
import sys
from importlib.machinery import PathFinder
from pathlib import Path

from clexp.config.errors import check_choice, check_int, check_ints, check_number

KINDS = ("number", "int", "choice", "ints")


def check_args(rules: dict, **values) -> None:
    """Apply `rules` (a class's `ARGS`) to the named argument values; raises `ConfigError`."""
    for key, (kind, option) in rules.items():
        if key not in values:
            continue
        value = values[key]
        if kind == "number":
            check_number(key, value, **option)
        elif kind == "int":
            check_int(key, value, **option)
        elif kind == "choice":
            check_choice(key, value, tuple(option))
        elif kind == "ints":
            check_ints(key, value, **option)
        else:
            raise TypeError(f"ARGS[{key!r}]: unknown kind {kind!r} (one of {', '.join(KINDS)})")


def rules_of(cls: type) -> dict:
    """The `ARGS` of `cls` merged over its bases' (a subclass narrows a rule by restating it)."""
    rules: dict = {}
    for klass in reversed(cls.__mro__):
        rules.update(klass.__dict__.get("ARGS", {}))
    return rules


# ------------------------------------------------------------------------------ reading ARGS from source


@functools.lru_cache(maxsize=None)
def _source(module: str) -> tuple[ast.Module, bool] | None:
    """The parsed source of `module`, found on sys.path without importing it (or its packages)."""
    path, spec = None, None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = PathFinder.find_spec(name, path)
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py") or not Path(origin).is_file():
        return None
    try:
        return ast.parse(Path(origin).read_text(encoding="utf-8")), origin.endswith("__init__.py")
    except (OSError, SyntaxError, ValueError):
        return None


def _import_source(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name of a `from X import y` inside `module`."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
    return ".".join(parts + ([node.module] if node.module else []))


def _definition(module: str, name: str, depth: int = 0):
    """(module, the top-level AST node that defines `name` there), following `from X import name`."""
    parsed = _source(module)
    if parsed is None or depth > 8:
        return None
    tree, is_package = parsed
    for stmt in tree.body:
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef)) and stmt.name == name:
            return module, stmt
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            return module, stmt.value
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
            return module, stmt.value
        if isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    return _definition(_import_source(module, is_package, stmt), alias.name, depth + 1)
    return None


class _NotLiteral(Exception):
    pass


def _literal(module: str, node: ast.AST, depth: int = 0, local: dict | None = None):
    """A literal expression, names resolved to literals of the class body (`local`) or the module
    (statically)."""
    if depth > 8:
        raise _NotLiteral
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return tuple(_literal(module, e, depth, local) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral
        return {_literal(module, k, depth, local): _literal(module, v, depth, local)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(module, node.operand, depth, local)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name):
        if local and node.id in local:
            return _literal(module, local[node.id], depth + 1)
        found = _definition(module, node.id)
        if found is None or isinstance(found[1], (ast.ClassDef, ast.FunctionDef)):
            raise _NotLiteral
        return _literal(found[0], found[1], depth + 1)
    raise _NotLiteral


def _class_rules(module: str, cls: ast.ClassDef, depth: int = 0) -> dict:
    """`ARGS` of `cls` merged over its bases' (statically; a base that cannot be read adds nothing)."""
    rules: dict = {}
    if depth < 8:
        for base in cls.bases:
            if isinstance(base, ast.Name):
                found = _definition(module, base.id)
                if found is not None and isinstance(found[1], ast.ClassDef):
                    rules.update(_class_rules(found[0], found[1], depth + 1))
    local = {t.id: stmt.value for stmt in cls.body if isinstance(stmt, ast.Assign)
             for t in stmt.targets if isinstance(t, ast.Name) and t.id != "ARGS"}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ARGS" for t in stmt.targets):
            try:
                own = _literal(module, stmt.value, local=local)
            except _NotLiteral:
                own = {}
            if isinstance(own, dict):
                rules.update(own)
    return rules


def _function_rules(module: str, name: str) -> dict:
    """The literal `<name>.ARGS = {...}` set at the top level of `module` after the function `name`."""
    parsed = _source(module)
    for stmt in parsed[0].body if parsed else ():
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "ARGS" and isinstance(t.value, ast.Name)
                and t.value.id == name for t in stmt.targets):
            try:
                own = _literal(module, stmt.value)
            except _NotLiteral:
                return {}
            return own if isinstance(own, dict) else {}
    return {}


@functools.lru_cache(maxsize=None)
def static_rules(target: str) -> dict:
    """The `ARGS` rules of the class or function `target` ("pkg.module.Class"), read without importing
    it; {} when unknown (no literal rules, a module that cannot be found)."""
    module, _, name = target.rpartition(".")
    if not module or module in sys.builtin_module_names:
        return {}
    found = _definition(module, name)
    if found is None:  # `pkg.Class` re-exported by pkg/__init__.py is followed by _definition too
        return {}
    if isinstance(found[1], ast.FunctionDef):
        return _function_rules(found[0], found[1].name)
    return _class_rules(*found) if isinstance(found[1], ast.ClassDef) else {}
