"""bench/select_defaults.py runs in its quick mode: the validation grid (naive first, one chosen strength per
method, a strength that harms marked and never chosen) and the test table of the chosen strengths."""

import pytest


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
            if not line.startswith("| ---")]


@pytest.mark.slow
def test_select_defaults_quick_prints_the_grid_and_the_test_table(capsys):
    from bench.select_defaults import HARM, QUICK_GRID, main

    methods = ["ewc", "si"]
    assert main(["--quick", "--only", *methods]) == 0
    out = capsys.readouterr().out
    tables = [block for block in out.split("\n\n") if block.startswith("| method |")]
    assert len(tables) == 2, out  # the validation grid, the test table
    grid, test = (_rows(t) for t in tables)

    head, naive, *rows = grid
    assert naive[0] == "naive" and len(rows) == sum(len(QUICK_GRID[m][1]) for m in methods)
    reference = [float(c) for c in naive[2:4]]
    for method in methods:
        mine = [r for r in rows if r[0] == method]
        chosen = [r for r in mine if r[-1] == "**chosen**"]
        assert len(chosen) == 1, mine
        for r in mine:  # what harms (more than HARM below naive) is marked and never chosen
            cells = [float(c) for c in r[2:4] if c != "diverged"]
            harms = len(cells) < 2 or any(c < ref - HARM for c, ref in zip(cells, reference))
            assert harms == r[-1].startswith(("harms", "diverged")), r

    assert [r[0] for r in test[1:]] == ["naive", *methods]
    assert all(len(r) == 6 for r in test)  # method, strength, acc / forgetting × 2 scenarios
    for row in test[1:]:  # accuracy in [0, 1], forgetting in [-1, 1] (negative: the experience improved)
        values = [None if c == "diverged" else float(c.split(" ")[0]) for c in row[2:]]
        assert all(v is None or (0 <= v <= 1 if k % 2 == 0 else -1 <= v <= 1) for k, v in enumerate(values)), row
    for method, row in zip(methods, test[2:]):  # the test row runs the strength the grid chose
        (chosen,) = [r for r in grid if r[0] == method and r[-1] == "**chosen**"]
        assert row[1] == chosen[1]


def test_select_defaults_refuses_a_test_value_of_a_method_it_has_no_grid_for(capsys):
    from bench.select_defaults import main

    with pytest.raises(SystemExit) as info:
        main(["--test-value", "nope=1"])
    assert info.value.code == 2 and "--test-value nope=1" in capsys.readouterr().err
