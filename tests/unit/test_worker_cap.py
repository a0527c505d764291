"""The task's admission cap split across its worker processes (streaming_service/workers.py)."""

from __future__ import annotations

import pytest

from streaming_service.workers import worker_cap


@pytest.mark.parametrize(("task_cap", "workers"), [(40, 2), (41, 2), (7, 3), (2, 2), (100, 4)])
def test_the_shares_add_up_to_the_task_cap(task_cap: int, workers: int) -> None:
    shares = [worker_cap(task_cap, workers, i) for i in range(workers)]
    assert sum(shares) == task_cap
    assert max(shares) - min(shares) <= 1


def test_no_cap_stays_no_cap_in_every_worker() -> None:
    assert [worker_cap(0, 2, i) for i in range(2)] == [0, 0]
