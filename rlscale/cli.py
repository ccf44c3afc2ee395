"""The ``rlscale`` command: one entry point, a subcommand per job.

Each subcommand lives in its own module (``rlscale.simulate``, ...) with a ``main(argv)`` so
that ``python -m rlscale.simulate`` and ``rlscale simulate`` are the same program.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = {
    "simulate": ("rlscale.simulate", "replay a workload through the simulated cluster"),
    "evaluate": ("rlscale.evaluate.cli", "judge policies on held-out windows (table, CSV, plots)"),
    "tune": ("rlscale.evaluate.tune_cli", "tune the baselines' knobs on training windows"),
    "train": ("rlscale.train", "train the PPO scaling-and-routing policy, export its bundle"),
    "controller": ("rlscale.controller.cli", "run the in-cluster controller"),
    "twin": ("rlscale.twin.cli", "run a simulated cluster behind a Kubernetes API (for the "
                                 "controller)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``rlscale SUBCOMMAND [ARGS...]``; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: rlscale SUBCOMMAND [ARGS...]\n\nsubcommands:")
        for name, (_module, summary) in SUBCOMMANDS.items():
            print(f"  {name:<12} {summary}")
        print("\n'rlscale SUBCOMMAND --help' describes each.")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"rlscale: unknown subcommand {name!r}; choose from {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
