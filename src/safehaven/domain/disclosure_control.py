"""Cell suppression for count tables: primary (small cells) and secondary (complements).

Hiding a small cell is not enough when row and column totals are published: a lone hidden
cell in a row is its total minus the others.  Treat the table with its margins as a
bipartite graph (rows and columns as nodes, hidden cells as edges; every line sums to its
total).  A hidden cell can be solved for exactly when its edge lies on no cycle, i.e. it is
a *bridge*.  So after hiding the small cells we keep hiding complementary cells, closing a
rectangle through each bridge, until no hidden cell is a bridge.  The tests check the
result independently with linear algebra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

Cell = tuple[int, int]


@dataclass(frozen=True)
class ProtectedTable:
    """Counts with margins; ``None`` marks a suppressed value.

    ``values[i][j]`` for i < rows and j < cols are cells, column ``cols`` holds row totals,
    row ``rows`` holds column totals and ``values[rows][cols]`` the grand total.
    """

    rows: int
    cols: int
    values: list[list[int | None]]
    primary: frozenset[Cell]
    secondary: frozenset[Cell]

    @property
    def suppressed(self) -> frozenset[Cell]:
        return self.primary | self.secondary


def extend(cells: Sequence[Sequence[int]]) -> list[list[int]]:
    """The table with its row totals, column totals and grand total added."""
    rows = [[*r, sum(r)] for r in cells]
    totals = [sum(r[j] for r in rows) for j in range(len(rows[0]))]
    return [*rows, totals]


def _connected(adj: dict[str, set[str]], a: str, b: str, skip: tuple[str, str]) -> bool:
    seen = {a}
    stack = [a]
    while stack:
        node = stack.pop()
        if node == b:
            return True
        for nxt in adj[node]:
            if {node, nxt} == set(skip) or nxt in seen:
                continue
            seen.add(nxt)
            stack.append(nxt)
    return False


def bridges(hidden: set[Cell]) -> list[Cell]:
    """Hidden cells that linear equations over the published values would determine."""
    adj: dict[str, set[str]] = {}
    for i, j in hidden:
        adj.setdefault(f"r{i}", set()).add(f"c{j}")
        adj.setdefault(f"c{j}", set()).add(f"r{i}")
    return sorted(
        (i, j) for i, j in hidden if not _connected(adj, f"r{i}", f"c{j}", (f"r{i}", f"c{j}"))
    )


def protect(cells: Sequence[Sequence[int]], min_cell: int = 10) -> ProtectedTable:
    """Suppress cells below ``min_cell`` (zeros are not disclosive) and their complements."""
    if not cells or not cells[0]:
        raise ValueError("a table needs at least one row and one column")
    if any(len(r) != len(cells[0]) for r in cells) or any(v < 0 for r in cells for v in r):
        raise ValueError("cells must be a rectangular table of non-negative counts")
    full = extend(cells)
    m, n = len(cells), len(cells[0])
    primary = {(i, j) for i, j in product(range(m + 1), range(n + 1)) if 0 < full[i][j] < min_cell}
    hidden = set(primary)
    while True:
        open_bridges = bridges(hidden)
        if not open_bridges:
            break
        i, j = open_bridges[0]
        best: tuple[tuple[int, int, int], set[Cell]] | None = None
        for i2, j2 in product(range(m + 1), range(n + 1)):
            if i2 == i or j2 == j:
                continue
            added = {(i, j2), (i2, j), (i2, j2)} - hidden
            # Prefer hiding as little as possible: fewest cells, fewest margins, smallest sum.
            cost = (
                len(added),
                sum(1 for a, b in added if a == m or b == n),
                sum(full[a][b] for a, b in added),
            )
            if best is None or cost < best[0]:
                best = (cost, added)
        # The extended table is at least 2x2, so a rectangle through (i, j) always exists.
        assert best is not None
        hidden |= best[1]
    values: list[list[int | None]] = [
        [None if (i, j) in hidden else full[i][j] for j in range(n + 1)] for i in range(m + 1)
    ]
    return ProtectedTable(m, n, values, frozenset(primary), frozenset(hidden - primary))
