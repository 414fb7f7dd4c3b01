"""Commands that cannot rot: every shell block of README.md and docs/ is run here, or skipped with its reason.

A block's marker is an HTML comment on the line just above its fence (invisible on GitHub and on the site):

    <!-- docs-test: run -->                          run the block as it is written
    <!-- docs-test: run append="train.epochs=1" -->  run it with these overrides added to every `clexp` command
    <!-- docs-test: run replace="n_trials=20=>n_trials=2" -->   with these substitutions (`A=>B; C=>D`)
    <!-- docs-test: skip reason="needs a SLURM cluster" -->     not run here; the reason is the test's skip reason
    <!-- docs-test: output -->                       above a ```text block: the printed lines of the run block
                                                     before it, numbers free (`...` stands for anything)

A shell block (bash, sh, shell, console) without a marker fails `test_every_shell_block_is_marked`. Python
blocks with a `run` marker are executed in this process, and every Python block of docs/api.md must have one.
Shell blocks run with bash (`set -eo pipefail`) in a temporary folder holding a link to `examples/`, where
`clexp`, `clexp-report` and `clexp-reproduce` are this checkout's (`python -m clexp`, ...), wandb offline.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELL = ("bash", "sh", "shell", "console")
MARKER = re.compile(r"^<!-- docs-test: (?P<kind>run|skip|output)(?P<args>.*?)\s*-->\s*$")
ARG = re.compile(r'(\w+)="([^"]*)"')
SCRIPTS = {"clexp": "clexp", "clexp-report": "clexp.review.report", "clexp-reproduce": "clexp.reproduce"}


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    kind: str | None = None  # run, skip, output, or None (no marker)
    args: dict = field(default_factory=dict)
    expected: "Block | None" = None  # the output block that follows a run block

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the marker above each (if any); an `output` block is
    attached to the run block before it."""
    lines = path.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence[1]))
        block = Block(path, i + 1, fence[2].lower(), "\n".join(lines[i + 1:end]))
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        if marker:
            block.kind, block.args = marker["kind"], dict(ARG.findall(marker["args"]))
        if block.kind == "output":
            assert found and found[-1].kind == "run", f"{block.id}: an output block must follow a run block"
            found[-1].expected = block
        else:
            found.append(block)
        i = end + 1
    return found


ALL = [b for path in doc_files() for b in blocks(path)]
SHELL_BLOCKS = [b for b in ALL if b.language in SHELL]
PYTHON_RUN = [b for b in ALL if b.language == "python" and b.kind == "run"]


def test_every_shell_block_is_marked():
    unmarked = [b.id for b in SHELL_BLOCKS if b.kind not in ("run", "skip")]
    assert not unmarked, f"shell blocks without a docs-test marker (run or skip with a reason): {unmarked}"
    no_reason = [b.id for b in SHELL_BLOCKS if b.kind == "skip" and not b.args.get("reason")]
    assert not no_reason, f"skipped without a reason: {no_reason}"
    assert any(b.kind == "run" for b in SHELL_BLOCKS if b.path.name == "README.md")


def test_every_python_block_of_the_api_page_runs():
    api = [b for b in ALL if b.path == ROOT / "docs" / "api.md" and b.language == "python"]
    assert api and all(b.kind == "run" for b in api), [b.id for b in api if b.kind != "run"]


def logical_lines(code: str) -> list[str]:
    """Lines with their `\\` continuations joined."""
    return code.replace("\\\n", " ").split("\n")


def adapt(code: str, args: dict) -> str:
    """The block as the test runs it: `replace` substitutions, then `append` added to every clexp command
    (before a trailing comment)."""
    for pair in filter(None, (p.strip() for p in args.get("replace", "").split(";"))):
        old, new = pair.split("=>")
        assert old in code, f"replace: {old!r} is not in the block"
        code = code.replace(old, new)
    extra = args.get("append")
    if not extra:
        return code
    out = []
    for line in logical_lines(code):
        command, hash_, comment = line.partition(" #")
        words = shlex.split(command, comments=False) if command.strip() else []
        programs = [w for w in words if "=" not in w or w.startswith("-")]
        if programs and programs[0] == "clexp":
            line = f"{command.rstrip()} {extra}" + (f"  #{comment}" if hash_ else "")
        out.append(line)
    return "\n".join(out)


def shell_env(tmp: Path) -> dict:
    bin_dir = tmp / ".bin"
    bin_dir.mkdir()
    for name, module in SCRIPTS.items():
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        script.chmod(0o755)
    (tmp / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "WANDB_SERVICE")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", WANDB_MODE="offline", WANDB_SILENT="true",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


def pattern(line: str) -> re.Pattern:
    """A printed line of an output block as a pattern: numbers free, `...` anything, runs of spaces any."""
    parts = re.split(r"(\.\.\.|-?\d+(?:\.\d+)?(?:e-?\d+)?|\s+)", line.strip())
    regex = "".join(".*" if p == "..." else r"-?\d+(?:\.\d+)?(?:e-?\d+)?" if re.fullmatch(r"-?\d[\d.e-]*", p)
                    else r"\s+" if p.isspace() else re.escape(p) for p in parts if p)
    return re.compile(regex)


def assert_output(stdout: str, expected: Block, appended: str = "") -> None:
    """Every line of the output block appears in the printed output, in order (blank and `...` lines aside):
    on a line of its own, or after a progress bar's carriage return on the same line. The test's own
    `append` overrides are taken out of the printed lines first (a printed command repeats them)."""
    printed = [line.strip() for line in re.split(r"[\r\n]", stdout)]
    for token in appended.split():
        printed = [re.sub(rf"\s+{re.escape(token)}(?=\s|$)", "", line, flags=re.IGNORECASE) for line in printed]
    at = 0
    for line in expected.code.split("\n"):
        if not line.strip() or line.strip() == "...":
            continue
        regex = pattern(line)
        hit = next((k for k in range(at, len(printed)) if regex.search(printed[k])), None)
        assert hit is not None, f"{expected.id}: the line {line.strip()!r} is not in the output:\n{stdout[-3000:]}"
        at = hit + 1


_RAN: dict[str, subprocess.CompletedProcess] = {}  # a block written twice (README and a page) runs once


@pytest.mark.slow
@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.id)
def test_shell_block(block: Block, tmp_path):
    if block.kind != "run":
        pytest.skip(block.args.get("reason", "no docs-test marker"))
    script = adapt(block.code, block.args)
    if script not in _RAN:
        _RAN[script] = subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], cwd=tmp_path,
                                      env=shell_env(tmp_path), capture_output=True, text=True, timeout=600)
    out = _RAN[script]
    assert out.returncode == 0, (f"{block.id} failed ({out.returncode}):\n{script}\n"
                                 f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    if block.expected is not None:
        assert_output(out.stdout, block.expected, block.args.get("append", ""))


@pytest.mark.parametrize("block", PYTHON_RUN, ids=lambda b: b.id)
def test_python_block(block: Block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    exec(compile(adapt(block.code, block.args), block.id, "exec"), {"__name__": "__docs__"})
    if block.expected is not None:
        assert_output(capsys.readouterr().out, block.expected)


def test_adapt_appends_to_clexp_commands_only():
    code = "clexp -m method=ewc seed=0,1   # a sweep\nclexp-report outputs/x\nPYTHONPATH=e clexp a=1 \\\n  b=2"
    assert adapt(code, {"append": "train.epochs=1"}).split("\n") == [
        "clexp -m method=ewc seed=0,1 train.epochs=1  # a sweep", "clexp-report outputs/x",
        "PYTHONPATH=e clexp a=1    b=2 train.epochs=1"]
    assert adapt("clexp x n_trials=20", {"replace": "n_trials=20=>n_trials=2"}) == "clexp x n_trials=2"


def test_output_pattern_frees_numbers_only():
    expected = "average accuracy 16.9%   forgetting 99.0%\n...\nResults: .../results.json"
    block = Block(ROOT / "README.md", 1, "text", expected)
    assert_output("x\naverage accuracy 20.1%  forgetting 100.0%\nResults: /a/b/results.json\n", block)
    with pytest.raises(AssertionError):
        assert_output("average accuracy 20.1%\nResults: /a/b/results.json\n", block)
    command = Block(ROOT / "README.md", 1, "text", "clexp -m method=ewc method.lam=1000 seed=0,1,2")
    assert_output("clexp -m method=ewc train.epochs=1 plots=False method.lam=10 seed=0,1,2", command,
                  "train.epochs=1 plots=false")
    with pytest.raises(AssertionError):
        assert_output("clexp -m method=ewc train.epochs=1 method.lam=10 seed=0,1,2", command)
