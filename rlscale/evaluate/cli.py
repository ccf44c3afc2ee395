"""``rlscale evaluate``: judge policies on held-out windows of a scenario.

Examples::

    rlscale evaluate                                   # six policies, default scenario, tuned
    rlscale evaluate --policies hpa:target=0.5,planner --seeds 0,1 --split validation
    rlscale evaluate --scenario single-pool --no-tune --out runs/eval-single
    rlscale evaluate --trace my-traffic.csv --target-load 0.5 --policies ppo,planner,hpa
    rlscale evaluate --curves auto                     # + cost at equal SLO against each curve
    rlscale evaluate --suite generalization --policies ppo,lookahead [--quick]

Load matching (``--trace``, or a generated workload): ``--time-scale X`` replays a trace X
times faster; ``--rate-scale X`` multiplies the request rate (thinning or superposing
requests, keeping the rate's shape); ``--target-load`` sets the mean load to tokens per second
(``30000tok/s``) or to a fraction of the cluster's capacity (``0.45``; capacity per replica from
the profiles at the SLO for the workload's own lengths). A trace scenario without ``splits``
(always so with ``--trace``) is split in halves: baselines are tuned on the first, policies are
judged on the second, and the output says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlscale.agents.baselines import BASELINES
from rlscale.agents.familiarity import FamiliarityConfig
from rlscale.agents.slo_guard import DEFAULT_ENTER
from rlscale.configschema import ConfigError
from rlscale.envs.config import env_config
from rlscale.envs.splits import scenario_splits
from rlscale.evaluate.plots import plot_all
from rlscale.evaluate.policies import DEFAULT_POLICIES, POLICY_NAMES, PolicySpec, parse_policies
from rlscale.evaluate.prepare import LoadOptions, prepare
from rlscale.evaluate.report import aggregate, markdown_table, write_results
from rlscale.evaluate.runner import check_policies, run_tasks, tasks_for
from rlscale.evaluate.suite import run_suite
from rlscale.evaluate.sweep import judge, sweep
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
                             "(ppo: the shipped policy, or ppo:bundle=DIR; behind the shield "
                             f"with fallback=planner, unfamiliar={FamiliarityConfig().enter} "
                             f"and guard={DEFAULT_ENTER}, each can be changed, the last two "
                             "set to off)")
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
        parser.add_argument("--trace", type=Path,
                            help="replay this trace on the scenario's pools")
        parser.add_argument("--time-scale", type=float,
                            help="replay the trace this many times faster")
        parser.add_argument("--rate-scale", type=float, help="multiply the request rate")
        parser.add_argument("--target-load", help="mean load: tokens/s ('30000tok/s') or a "
                            "fraction of the cluster's capacity ('0.45')")
        parser.add_argument("--curves", default="", help="baselines to sweep into cost-vs-"
                            "attainment curves on the evaluated windows (comma-separated, "
                            "'floor' for the clairvoyant floor; 'auto': the baselines in "
                            "--policies and the floor); adds cost at equal SLO to the table")
        parser.add_argument("--suite", help="run a suite of held-out workload families "
                            "('generalization' or a YAML path) instead of one scenario")
        parser.add_argument("--families", default="",
                            help="with --suite: only these families")
        parser.add_argument("--tables-only", action="store_true", help="with --suite and "
                            "--out: rebuild the tables from the results already in --out")
        parser.add_argument("--quick", action="store_true", help="with --suite: one short "
                            "window per family and no per-pool sweeps (a smoke test, minutes)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress (a bar on a terminal, else a line every 10 %% on "
                             "stderr)")
    parser.set_defaults(tune_only=tune_only, **({} if tune_only else {"tune_seeds": None}))
    return parser


def main(argv: Sequence[str] | None = None, *, tune_only: bool = False) -> int:
    """Entry point of ``rlscale evaluate`` (``rlscale tune`` with ``tune_only``); exit code 2 on
    a configuration error (every input — scenario, policies, bundles — is loaded before
    anything is written)."""
    args = build_parser(tune_only=tune_only).parse_args(argv)
    if args.tune_only:
        return _tune_only(args)
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        specs = parse_policies(args.policies)
        if args.suite:
            out = args.out or Path("runs") / f"suite-{Path(args.suite).stem}-{stamp}"
            text = run_suite(args.suite, specs, out, quick=args.quick,
                             families=[f for f in args.families.split(",") if f.strip()],
                             workers=args.workers, progress=not args.quiet,
                             slo_target=args.slo_target or 0.95,
                             tables_only=args.tables_only)
            print(text)
            print(f"\nwrote {out}/suite.md, suite.json and a folder per family in "
                  f"{time.perf_counter() - started:.0f} s")
            return 0
        out = args.out or Path("runs") / f"evaluate-{Path(str(args.scenario)).stem}-{stamp}"
        out.mkdir(parents=True, exist_ok=True)
        prepared = prepare(args.scenario, out, LoadOptions(
            args.trace, args.time_scale, args.rate_scale, args.target_load))
        scenario, ref = prepared.scenario, prepared.ref
        seeds = _seeds(args.seeds)
        config = env_config(scenario)
        windows = scenario_splits(scenario, config.episode.duration_s).windows(args.split)
        target = args.slo_target if args.slo_target is not None else (
            tuning_config(scenario).slo_target)
        warnings: list[str] = []
        check_policies(scenario, specs)  # a bad bundle fails here, before tuning or runs
        if args.tuned:
            specs = load_tuned(args.tuned, specs)
        elif args.tune:
            specs, record = tune(scenario, ref, specs, slo_target=target,
                                 workers=args.workers, progress=not args.quiet)
            save_tuned(out / "tuned.json", record)
            warnings = tuning_warnings(record)
        rows = run_tasks(tasks_for(ref, specs, windows, seeds, args.split),
                         workers=args.workers, progress=not args.quiet,
                         description=f"evaluating on {args.split} windows")
        curves = None
        names = curve_names(args.curves, specs)
        if names:
            curves = sweep(names, lambda batch, text: run_tasks(
                tasks_for(ref, batch, windows, seeds, args.split), workers=args.workers,
                progress=not args.quiet, description=text),
                pools=len(scenario.cluster.pools), target=target)
    except (ConfigError, WorkloadConfigError, TraceFormatError, ValueError) as err:
        print(f"rlscale evaluate: {err}", file=sys.stderr)
        return 2
    aggregated = aggregate(rows)
    judged = judge(rows, curves, [s.label for s in specs]) if curves else None
    elapsed = time.perf_counter() - started
    meta: dict[str, Any] = {
        "scenario": scenario.name, "split": args.split, "seeds": seeds,
        "windows": [w.__dict__ for w in windows], "policies": [s.label for s in specs],
        "slo": {"ttft_s": scenario.slo.ttft_s, "itl_s": scenario.slo.itl_s},
        "slo_target": target, "wall_s": elapsed, "notes": prepared.notes, "warnings": warnings}
    if curves is not None and judged is not None:
        meta["curves"] = {"points": curves.points, "best": curves.best,
                          "equal_slo": {p: {c: r.__dict__ for c, r in per.items()}
                                        for p, per in judged.items()}}
    write_results(out, rows + (curves.rows if curves else []), aggregated, meta)
    table = markdown_table(aggregated, judged)
    (out / "results.md").write_text(table + "\n")
    if not args.no_plots:
        points = None if curves is None else {
            name: [(r["slo_attainment"], r["cost_usd"]) for r in aggregate(
                [row for row in curves.rows if row["policy"] in labels])]
            for name, labels in curves.points.items()}
        plot_all(out, rows, aggregated, [p.name for p in scenario.cluster.pools],
                 scenario.slo.ttft_s, target, points)
    print(f"\n{scenario.name}: {len(specs)} policies x {len(windows)} {args.split} windows x "
          f"{len(seeds)} seeds (SLO: TTFT <= {scenario.slo.ttft_s} s, ITL <= "
          f"{scenario.slo.itl_s} s; 95% CIs)")
    for line in prepared.notes:
        print(line)
    print()
    print(table)
    for line in warnings:
        print(line)
    print(f"\nwrote {out}/results.csv, results.json, results.md"
          + ("" if args.no_plots else ", replicas.png, weights.png, ttft.png, pareto.png")
          + f" in {elapsed:.0f} s")
    return 0


def curve_names(text: str, specs: Sequence[PolicySpec]) -> list[str]:
    """The curves ``--curves`` asks for (``auto``: the evaluated baselines and the floor)."""
    if text.strip() == "auto":
        names = [s.name for s in specs if s.name in BASELINES]
        return [*dict.fromkeys(names), "floor"]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES and n != "floor"]
    if unknown:
        raise ConfigError(f"--curves: unknown {unknown}; choose from {sorted(BASELINES)}, "
                          f"floor or auto")
    return names


def tuning_warnings(record: dict[str, Any]) -> list[str]:
    """One warning line per policy whose tuning missed the SLO target."""
    lines = []
    for name, entry in record.get("policies", {}).items():
        if not entry.get("met_target", True):
            best = max(t["slo_attainment"] for t in entry["tried"])
            lines.append(f"warning: tuning {name} missed the SLO target "
                         f"{record['slo_target']:.0%} on the training windows (best "
                         f"{best:.1%} at {entry['chosen']}); its row is the most attaining "
                         f"setting, not one at the target")
    return lines


def _tune_only(args: argparse.Namespace) -> int:
    """``rlscale tune``: tune on training windows, write ``tuned.json``, print the choices."""
    try:
        scenario = load_scenario(args.scenario)
        specs = parse_policies(args.policies)
        seeds = _seeds(args.tune_seeds) if args.tune_seeds is not None else None
        check_policies(scenario, specs)  # a bad bundle fails here, before anything is written
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
