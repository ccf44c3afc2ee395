"""The slow-marker discipline: ``pytest -m "not slow"`` is the quick loop (under 2 minutes on
2 cores), so a test that is not marked ``slow`` should take seconds. The terminal summary names
every unmarked test whose set-up, call and tear-down together took longer than
``SLOW_BUDGET_S`` (a module fixture's set-up counts for the first test that needs it): mark it
``slow`` or make it cheaper. It reports rather than fails, since a busy machine stretches every
duration.
"""

from __future__ import annotations

from typing import Any

import pytest

SLOW_BUDGET_S = 10.0
"""Wall seconds an unmarked test may take before the summary names it."""

_spent: dict[str, float] = {}
_over_budget: list[tuple[str, float]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    spent = _spent.get(item.nodeid, 0.0) + report.duration
    _spent[item.nodeid] = spent
    if (report.when == "teardown" and spent > SLOW_BUDGET_S
            and item.get_closest_marker("slow") is None):
        _over_budget.append((item.nodeid, spent))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _over_budget:
        terminalreporter.section("tests over the quick loop's budget (mark them slow)")
        for nodeid, seconds in sorted(_over_budget, key=lambda entry: -entry[1]):
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}  (budget "
                                        f"{SLOW_BUDGET_S:.0f} s)")
