"""``rlscale tune``: tune the baselines' main knobs on a scenario's training windows only."""

from __future__ import annotations

from collections.abc import Sequence

from rlscale.evaluate.cli import main as evaluate_main


def main(argv: Sequence[str] | None = None) -> int:
    """Same options as ``rlscale evaluate``; stops after writing ``tuned.json``."""
    return evaluate_main([*(argv or []), "--tune-only"])
