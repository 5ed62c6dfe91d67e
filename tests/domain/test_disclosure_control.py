"""Cell suppression: nothing small is shown, nothing hidden can be solved for."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from safehaven.domain.disclosure_control import extend, protect


def determined_cells(table) -> set[tuple[int, int]]:
    """Independent check: which hidden values do the published ones pin down exactly?

    Unknowns are the hidden cells; each row and each column of the extended table gives
    one equation (cells minus total = 0).  A hidden value is determined iff its unit vector
    lies in the row space of the coefficient matrix.
    """
    m, n = table.rows, table.cols
    hidden = sorted(table.suppressed)
    index = {c: k for k, c in enumerate(hidden)}
    equations = []
    for i in range(m + 1):
        row = np.zeros(len(hidden))
        for j in range(n + 1):
            if (i, j) in index:
                row[index[(i, j)]] = -1 if j == n else 1
        equations.append(row)
    for j in range(n + 1):
        col = np.zeros(len(hidden))
        for i in range(m + 1):
            if (i, j) in index:
                col[index[(i, j)]] = -1 if i == m else 1
        equations.append(col)
    a = np.array(equations)
    rank = np.linalg.matrix_rank(a) if len(hidden) else 0
    found = set()
    for c, k in index.items():
        unit = np.zeros(len(hidden))
        unit[k] = 1
        if np.linalg.matrix_rank(np.vstack([a, unit])) == rank:
            found.add(c)
    return found


small_skewed = st.one_of(st.integers(0, 12), st.integers(0, 200))
tables = st.integers(1, 6).flatmap(
    lambda rows: st.integers(1, 5).flatmap(
        lambda cols: st.lists(
            st.lists(small_skewed, min_size=cols, max_size=cols), min_size=rows, max_size=rows
        )
    )
)


@settings(max_examples=300, deadline=None)
@given(tables)
def test_no_small_cell_shown_and_no_hidden_cell_derivable(cells):
    table = protect(cells, min_cell=10)
    full = extend(cells)
    for i, row in enumerate(table.values):
        for j, v in enumerate(row):
            if v is not None:
                assert v == full[i][j]
                assert v == 0 or v >= 10, (cells, i, j)
    assert determined_cells(table) == set(), (cells, table.suppressed)


def test_worked_example():
    cells = [[25, 3, 40], [30, 18, 12], [22, 15, 50]]
    table = protect(cells)
    assert table.primary == {(0, 1)}
    assert len(table.secondary) == 3  # a rectangle of complements, the cheapest one
    assert table.values[0][1] is None
    assert determined_cells(table) == set()
    assert table.values[3][3] == sum(map(sum, cells))  # the grand total survives


def test_nothing_small_nothing_hidden():
    table = protect([[10, 20], [30, 40]])
    assert table.suppressed == frozenset()


def test_one_dimensional_table():
    table = protect([[50], [4], [70], [33]])
    assert (1, 0) in table.primary
    assert determined_cells(table) == set()
    assert all(v is None or v == 0 or v >= 10 for r in table.values for v in r)
