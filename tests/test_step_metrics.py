"""Per-step request statistics of the environment (``rlscale.envs.step_metrics``)."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.envs.step_metrics import row_percentiles


@pytest.mark.parametrize("count", [1, 2, 3, 10, 11, 99, 100, 101, 857, 2048])
def test_row_percentiles_are_numpys_value_for_value(count: int) -> None:
    rng = np.random.default_rng(count)
    for rows in (rng.lognormal(0.0, 2.0, (3, count)), np.round(rng.random((3, count)), 1),
                 np.full((3, count), 0.25)):
        want = np.percentile(rows, [50, 90, 99], axis=1)
        assert np.array_equal(row_percentiles(rows), want)


def test_row_percentiles_leave_nan_to_numpy() -> None:
    rows = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(row_percentiles(rows),
                                  np.percentile(rows, [50, 90, 99], axis=1))
