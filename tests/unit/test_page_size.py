"""A page takes its rows while they fit in the budget, at most the limit, the first always."""

from __future__ import annotations

from router_service.adapters.db.page_size import rows_that_fit


def test_rows_are_taken_while_they_fit_and_what_is_left_is_said() -> None:
    assert rows_that_fit([3, 3, 3, 3], limit=3, budget=10) == (3, True)  # 4 rows: one left
    assert rows_that_fit([3, 3, 3], limit=3, budget=10) == (3, False)
    assert rows_that_fit([4, 4, 4], limit=3, budget=10) == (2, True)
    assert rows_that_fit([20, 1], limit=3, budget=10) == (1, True)  # the first always
    assert rows_that_fit([], limit=3, budget=10) == (0, False)
