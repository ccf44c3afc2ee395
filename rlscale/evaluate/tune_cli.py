"""``rlscale tune``: tune the baselines' main knobs on a scenario's training windows only."""

from __future__ import annotations

from collections.abc import Sequence

from rlscale.evaluate.cli import main as evaluate_main


def main(argv: Sequence[str] | None = None) -> int:
    """Tune, write ``tuned.json`` and print each policy's chosen knobs (``rlscale tune``)."""
    return evaluate_main(argv, tune_only=True)
