"""bench/select_defaults.py runs in its quick mode and prints the validation grid and the test table."""

import pytest


@pytest.mark.slow
def test_select_defaults_quick_prints_the_grid_and_the_test_table(capsys):
    from bench.select_defaults import QUICK_GRID, main

    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    tables = [block for block in out.split("\n\n") if block.startswith("| method |")]
    assert len(tables) == 2, out  # the validation grid, the test table
    grid, test = ([line for line in table.splitlines() if not line.startswith("| ---")] for table in tables)

    assert len(grid) == 1 + sum(len(values) for _, values in QUICK_GRID.values())  # header + 2 rows per method
    chosen = [row for row in grid if "**chosen**" in row]
    assert sorted(row.split("|")[1].strip() for row in chosen) == sorted(QUICK_GRID)  # one per method

    assert [row.split("|")[1].strip() for row in test[1:]] == ["naive", *QUICK_GRID]
    assert all(len(row.strip("|").split("|")) == 6 for row in test)  # method, strength, acc/forgetting × 2
    for row in test[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")[2:]]
        assert all(c == "diverged" or 0.0 <= float(c.split(" ")[0]) <= 1.0 for c in cells), row
    for method, row in zip(QUICK_GRID, test[2:]):  # the test row runs the strength the grid chose
        key, value = next(r for r in chosen if r.split("|")[1].strip() == method).split("|")[2].strip().split("=")
        assert row.split("|")[2].strip() == f"{key}={value}"
