"""``rlscale train`` / ``python -m rlscale.train``: train the joint scaling-and-routing policy.

Examples::

    rlscale train                                     # the default config and scenario
    rlscale train --config my-train.yaml --out runs/train-a
    rlscale train --set total_timesteps=200000 --set ppo.learning_rate=1e-4
    rlscale train --set imitation.steps=0             # PPO from scratch (no warm start)
    rlscale train --out runs/train-a --resume         # continue after an interruption

Writes to ``--out``: ``config.yaml`` (resolved) and ``versions.json``, ``tuned.json`` (the
baselines' knobs tuned on training windows), ``imitation.json`` (the warm start's rounds:
samples, share of expert actions, accuracy), ``checkpoints/``, ``tensorboard/``
(``tensorboard --logdir OUT/tensorboard``), ``validation/`` (policy exported at each validation,
``best``), ``bundle/`` (the policy to deploy: numpy weights, no torch needed),
``evaluation/`` (the held-out table, CSV/JSON and plots) and ``learning_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rlscale.configschema import ConfigError
from rlscale.sim.scenario import load_scenario
from rlscale.training.config import load_train_config
from rlscale.training.ppo import train


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``rlscale train``."""
    parser = argparse.ArgumentParser(prog="rlscale train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="training YAML (default: the packaged "
                        "rlscale/configs/train.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a field, e.g. ppo.n_steps=256")
    parser.add_argument("--total-timesteps", type=int, help="shorthand for --set total_timesteps")
    parser.add_argument("--out", type=Path, help="run directory (default runs/train-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in --out")
    parser.add_argument("--no-validation", action="store_true",
                        help="skip the periodic validation against the baselines")
    parser.add_argument("--no-final-evaluation", action="store_true",
                        help="skip the held-out evaluation at the end")
    parser.add_argument("--workers", type=int, help="processes for evaluations (default: cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit code 2 on a configuration error."""
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.total_timesteps is not None:
        overrides.append(f"total_timesteps={args.total_timesteps}")
    try:
        config = load_train_config(args.config, overrides)

        load_scenario(config.scenario)
    except ConfigError as err:
        print(f"rlscale train: {err}", file=sys.stderr)
        return 2
    if args.resume and args.out is None:
        print("rlscale train: --resume needs --out (the run directory to continue)",
              file=sys.stderr)
        return 2
    out = args.out or Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}"

    started = time.perf_counter()
    result = train(config, out, resume=args.resume, progress=not args.quiet,
                   validate=not args.no_validation,
                   final_evaluation=not args.no_final_evaluation, workers=args.workers)
    result["wall_s"] = time.perf_counter() - started
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    budget = result.get("time_budget")
    stopped = (f" (time budget of {budget['minutes']:g} min reached)"
               if budget and budget["stopped_at_steps"] is not None else "")
    print(f"\ntrained {result['steps']} steps in {result['wall_s'] / 60:.1f} min{stopped}; "
          f"policy bundle: {result['bundle']}; learning curve: {result['learning_curve']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
