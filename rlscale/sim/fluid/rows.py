"""The layout of a pool's request rows in the fast engine: one float row per request.

Read by :mod:`rlscale.sim.fluid.requests` (numpy) and :mod:`rlscale.sim.fluid.kernels` (the
compiled loops, which fold the indices as constants).
"""

from __future__ import annotations

from typing import Final

COLUMNS: Final = ("id", "arrival_s", "dispatch_s", "prompt", "output", "target", "first_s",
                  "start_s", "step_target")
"""Columns of a pool's request rows: workload index, arrival and dispatch times (s), prompt and
output tokens, the pool's prefilled-token count that completes its prompt, first-token and
first-scheduled times (s), the pool's engine-step count at which it finishes."""
WIDTH: Final = len(COLUMNS)
"""Values per row."""
(ID, ARRIVAL, DISPATCH, PROMPT, OUTPUT, TARGET, FIRST, START,
 STEP_TARGET) = range(WIDTH)
