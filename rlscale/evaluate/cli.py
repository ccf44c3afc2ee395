"""``rlscale evaluate``: judge policies on held-out windows of a scenario.

Examples::

    rlscale evaluate                                   # six policies, default scenario, tuned
    rlscale evaluate --policies hpa:target=0.5,planner --seeds 0,1 --split validation
    rlscale evaluate --scenario single-pool --no-tune --out runs/eval-single
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rlscale.configschema import ConfigError
from rlscale.envs.config import env_config
from rlscale.envs.splits import scenario_splits
from rlscale.evaluate.plots import plot_all
from rlscale.evaluate.policies import DEFAULT_POLICIES, POLICY_NAMES, parse_policies
from rlscale.evaluate.report import aggregate, markdown_table, write_results
from rlscale.evaluate.runner import run_tasks, tasks_for
from rlscale.evaluate.tune import load_tuned, save_tuned, tune, tuning_config
from rlscale.sim.scenario import DEFAULT_SCENARIO, load_scenario
from rlscale.sim.workload import TraceFormatError, WorkloadConfigError

TUNE_DESCRIPTION = """``rlscale tune``: tune the baselines' main knobs on training windows only.

Each knob value of each policy's grid runs on the scenario's tuning.windows training windows
(default 3) under tuning.seeds (default 0); the cheapest value reaching the SLO target wins.
Reuse the result with ``rlscale evaluate --tuned OUT/tuned.json``.

Examples::

    rlscale tune                                       # default scenario, every baseline
    rlscale tune --scenario single-pool --policies hpa,planner --out runs/tune-single
"""


def build_parser(*, tune_only: bool = False) -> argparse.ArgumentParser:
    """The command line of ``rlscale evaluate`` (or, with ``tune_only``, ``rlscale tune``)."""
    parser = argparse.ArgumentParser(
        prog="rlscale tune" if tune_only else "rlscale evaluate",
        description=TUNE_DESCRIPTION if tune_only else __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO,
                        help="built-in scenario name or YAML path")
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                        help=f"comma-separated, from {','.join(POLICY_NAMES)} (default "
                             f"{','.join(DEFAULT_POLICIES)}); knobs as name:knob=value;knob=value "
                             "(ppo: the shipped policy, or ppo:bundle=DIR)")
    if tune_only:
        parser.add_argument("--seeds", dest="tune_seeds", metavar="SEEDS", default=None,
                            help="seeds per training window, comma-separated (default: the "
                                 "scenario's tuning.seeds, 0); each seed adds a full run per "
                                 "knob value and window")
    else:
        parser.add_argument("--split", default="test", choices=("test", "validation"),
                            help="held-out windows to evaluate on (default test)")
        parser.add_argument("--seeds", default="0,1,2",
                            help="seeds per held-out window, comma-separated (default 0,1,2); "
                                 "tuning keeps the scenario's tuning.seeds (see rlscale tune)")
        parser.add_argument("--tune", dest="tune", action="store_true", default=True,
                            help="tune each baseline's main knob on training windows first "
                                 "(default)")
        parser.add_argument("--no-tune", dest="tune", action="store_false",
                            help="use knobs as given (or from --tuned)")
        parser.add_argument("--tuned", type=Path,
                            help="reuse the knobs of a tuned.json (from rlscale tune or an "
                                 "earlier evaluate) instead of tuning again")
    parser.add_argument("--slo-target", type=float, help="SLO attainment a tuned setting must "
                        "reach (default: the scenario's tuning.slo_target, 0.95)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default runs/evaluate-<scenario>-<time>)")
    if not tune_only:
        parser.add_argument("--tune-only", action="store_true",
                            help="only tune on training windows and write tuned.json "
                                 "(rlscale tune)")
        parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress (a bar on a terminal, else a line every 10 %% on "
                             "stderr)")
    parser.set_defaults(tune_only=tune_only, **({} if tune_only else {"tune_seeds": None}))
    return parser


def main(argv: Sequence[str] | None = None, *, tune_only: bool = False) -> int:
    """Entry point of ``rlscale evaluate`` (``rlscale tune`` with ``tune_only``); exit code 2 on
    a configuration error."""
    args = build_parser(tune_only=tune_only).parse_args(argv)
    if args.tune_only:
        return _tune_only(args)
    started = time.perf_counter()
    try:
        scenario = load_scenario(args.scenario)
        specs = parse_policies(args.policies)
        seeds = _seeds(args.seeds)
        config = env_config(scenario)
        windows = scenario_splits(scenario, config.episode.duration_s).windows(args.split)
        target = args.slo_target if args.slo_target is not None else (
            tuning_config(scenario).slo_target)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = args.out or Path("runs") / f"evaluate-{scenario.name}-{stamp}"
        out.mkdir(parents=True, exist_ok=True)
        if args.tuned:
            specs = load_tuned(args.tuned, specs)
        elif args.tune:
            specs, record = tune(scenario, args.scenario, specs, slo_target=target,
                                 workers=args.workers, progress=not args.quiet)
            save_tuned(out / "tuned.json", record)
        rows = run_tasks(tasks_for(args.scenario, specs, windows, seeds, args.split),
                         workers=args.workers, progress=not args.quiet,
                         description=f"evaluating on {args.split} windows")
    except (ConfigError, WorkloadConfigError, TraceFormatError, ValueError) as err:
        print(f"rlscale evaluate: {err}", file=sys.stderr)
        return 2
    aggregated = aggregate(rows)
    elapsed = time.perf_counter() - started
    meta = {"scenario": scenario.name, "split": args.split, "seeds": seeds,
            "windows": [w.__dict__ for w in windows], "policies": [s.label for s in specs],
            "slo": {"ttft_s": scenario.slo.ttft_s, "itl_s": scenario.slo.itl_s},
            "slo_target": target, "wall_s": elapsed}
    write_results(out, rows, aggregated, meta)
    table = markdown_table(aggregated)
    (out / "results.md").write_text(table + "\n")
    if not args.no_plots:
        plot_all(out, rows, aggregated, [p.name for p in scenario.cluster.pools],
                 scenario.slo.ttft_s, target)
    print(f"\n{scenario.name}: {len(specs)} policies x {len(windows)} {args.split} windows x "
          f"{len(seeds)} seeds (SLO: TTFT <= {scenario.slo.ttft_s} s, ITL <= "
          f"{scenario.slo.itl_s} s; 95% CIs)\n")
    print(table)
    print(f"\nwrote {out}/results.csv, results.json, results.md"
          + ("" if args.no_plots else ", replicas.png, weights.png, ttft.png, pareto.png")
          + f" in {elapsed:.0f} s")
    return 0


def _tune_only(args: argparse.Namespace) -> int:
    """``rlscale tune``: tune on training windows, write ``tuned.json``, print the choices."""
    try:
        scenario = load_scenario(args.scenario)
        specs = parse_policies(args.policies)
        seeds = _seeds(args.tune_seeds) if args.tune_seeds is not None else None
        out = args.out or Path("runs") / f"tune-{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        out.mkdir(parents=True, exist_ok=True)
        _, record = tune(scenario, args.scenario, specs, slo_target=args.slo_target,
                         seeds=seeds, workers=args.workers, progress=not args.quiet)
    except (ConfigError, WorkloadConfigError, TraceFormatError, ValueError) as err:
        print(f"rlscale tune: {err}", file=sys.stderr)
        return 2
    save_tuned(out / "tuned.json", record)
    for name, entry in record["policies"].items():
        print(f"{name}: {entry['chosen']} (target met: {entry['met_target']})")
    print(f"wrote {out / 'tuned.json'}")
    return 0


def _seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a clear error for anything else."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError("--seeds: no seed given")
    return seeds
