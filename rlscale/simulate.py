"""``rlscale simulate``: replay a workload through the simulated cluster with a static replica plan.

Examples::

    rlscale simulate                                  # the default scenario, seed 0
    rlscale simulate --scenario single-pool --replicas llama3-8b-a100=6 --seed 3
    rlscale simulate --profile llama-3-8b_a100-80gb --replicas 8 \\
        --trace ../shared/data/traces/AzureLLMInferenceTrace_conv.csv --time-scale 2
    rlscale simulate --profile llama-2-7b_a100-80gb --replicas 1 --poisson 4 --requests 2000 \\
        --lengths azure-conv-2023 --engine max_num_seqs=128 --engine enable_chunked_prefill=false
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from rlscale.configschema import ConfigError
from rlscale.sim.profile import ProfileError, load_profile
from rlscale.sim.run import simulate, with_replica_plan
from rlscale.sim.scenario import (
    DEFAULT_SCENARIO,
    ENGINE_SETTINGS,
    Scenario,
    load_scenario,
)
from rlscale.sim.spec import SLO, ClusterSpec, PoolSpec
from rlscale.sim.workload import TraceFormatError, Workload, WorkloadConfigError


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``rlscale simulate``."""
    parser = argparse.ArgumentParser(
        prog="rlscale simulate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_argument_group("cluster")
    where.add_argument("--scenario", default=DEFAULT_SCENARIO,
                       help=f"built-in scenario name or YAML path (default {DEFAULT_SCENARIO})")
    where.add_argument("--profile", help="simulate one pool of this profile instead of a scenario")
    where.add_argument("--replicas", help="static replicas: N with --profile, else POOL=N,POOL=N")
    where.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE",
                       help="vLLM engine setting for every pool (or POOL.KEY=VALUE): "
                            + ", ".join(ENGINE_SETTINGS))
    where.add_argument("--slo-ttft-s", type=float, help="SLO on time to first token, seconds")
    where.add_argument("--slo-itl-s", type=float, help="SLO on mean inter-token latency, seconds")
    load = parser.add_argument_group("workload (default: the scenario's)")
    load.add_argument("--trace", help="trace file (Azure, BurstGPT, Mooncake or plain CSV)")
    load.add_argument("--window", metavar="START_S:DURATION_S", help="replay part of the trace")
    load.add_argument("--time-scale", type=float, help="replay this many times faster")
    load.add_argument("--rate-scale", type=float, help="thin (<1) or multiply (>1) the requests")
    load.add_argument("--poisson", type=float, metavar="RATE_PER_S",
                      help="Poisson arrivals at this rate instead of a trace")
    load.add_argument("--requests", type=int, help="with --poisson: number of requests")
    load.add_argument("--lengths", default=None,
                      help="prompt/output lengths: azure-conv-2023, azure-code-2023, or a trace "
                           "file to resample from (default with --poisson: azure-conv-2023)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=None, help="random seed (default: scenario's)")
    run.add_argument("--out", type=Path, default=None,
                     help="output directory (default runs/simulate-<scenario>-<time>)")
    run.add_argument("--per-request-csv", action="store_true", help="also write requests.csv")
    run.add_argument("--max-sim-s", type=float, default=math.inf,
                     help="stop after this much simulated time")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _parse_pairs(text: str, what: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{what}: expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _engine_value(key: str, text: str) -> Any:
    kind = ENGINE_SETTINGS.get(key)
    if kind is None:
        raise ConfigError(f"--engine: unknown setting {key!r}; valid: {', '.join(ENGINE_SETTINGS)}")
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "on", "off"):
            raise ConfigError(f"--engine {key}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1", "on")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"--engine {key}: expected {kind.__name__}, got {text!r}") from None


def _apply_engine(scenario: Scenario, settings: list[str]) -> Scenario:
    pools = list(scenario.cluster.pools)
    names = [p.name for p in pools]
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep:
            raise ConfigError(f"--engine: expected KEY=VALUE, got {setting!r}")
        pool_name, dot, key = key.rpartition(".") if "." in key else ("", "", key)
        if dot and pool_name not in names:
            raise ConfigError(f"--engine: no pool {pool_name!r}; pools: {names}")
        value = _engine_value(key, text)
        for i, pool in enumerate(pools):
            if not dot or pool.name == pool_name:
                try:
                    profile = pool.profile.with_overrides(**{key: value})
                except (ProfileError, ValueError) as err:
                    raise ConfigError(f"--engine {setting}: {err}") from None
                pools[i] = dataclasses.replace(pool, profile=profile)
    cluster = dataclasses.replace(scenario.cluster, pools=tuple(pools))
    return dataclasses.replace(scenario, cluster=cluster)


def _single_pool(args: argparse.Namespace) -> Scenario:
    profile = load_profile(args.profile)
    try:
        replicas = int(args.replicas or 1)
    except ValueError:
        raise ConfigError(f"--replicas: with --profile expected a number, got "
                          f"{args.replicas!r}") from None
    pool = PoolSpec(name=profile.name, profile=profile, min_replicas=0,
                    max_replicas=max(1, replicas), initial_replicas=replicas)
    gpus = {profile.gpu: replicas * pool.gpus_per_replica}
    cluster = ClusterSpec(pools=(pool,), gpu_inventory=gpus)
    return Scenario(profile.name, f"{replicas} x {profile.name}", cluster, SLO(),
                    {"generator": {"kind": "poisson", "rate_per_s": 1.0},
                     "lengths": "azure-conv-2023", "duration_s": 600})


def resolve(args: argparse.Namespace) -> tuple[Scenario, dict[str, Any] | None]:
    """The scenario and workload overrides the arguments describe."""
    if args.profile:
        scenario = _single_pool(args)
    else:
        scenario = load_scenario(args.scenario)
        if args.replicas:
            plan = {k: int(v) if v.isdigit() else -1
                    for k, v in _parse_pairs(args.replicas, "--replicas").items()}
            scenario = with_replica_plan(scenario, plan)
    scenario = _apply_engine(scenario, args.engine)
    if args.slo_ttft_s or args.slo_itl_s:
        slo = SLO(args.slo_ttft_s or scenario.slo.ttft_s, args.slo_itl_s or scenario.slo.itl_s)
        scenario = dataclasses.replace(scenario, slo=slo)
    workload: dict[str, Any] | None = None
    if args.trace and args.poisson:
        raise ConfigError("give either --trace or --poisson, not both")
    if args.trace:
        workload = {"trace": str(Path(args.trace).resolve())}
        if args.window:
            start, sep, duration = args.window.partition(":")
            try:
                workload["window"] = {"start_s": float(start), "duration_s": float(duration)}
            except ValueError:
                raise ConfigError(f"--window: expected START_S:DURATION_S, got "
                                  f"{args.window!r}") from None
            if not sep:
                raise ConfigError(f"--window: expected START_S:DURATION_S, got {args.window!r}")
        if args.time_scale:
            workload["time_scale"] = args.time_scale
        if args.rate_scale:
            workload["rate_scale"] = args.rate_scale
        if args.lengths:
            workload["lengths"] = _lengths(args.lengths)
    elif args.poisson:
        if not args.requests or args.requests < 1:
            raise ConfigError("--poisson needs --requests N (N >= 1)")
        workload = {"generator": {"kind": "poisson", "rate_per_s": args.poisson},
                    "lengths": _lengths(args.lengths or "azure-conv-2023"),
                    "duration_s": 1.2 * args.requests / args.poisson + 10}
    elif any((args.window, args.time_scale, args.rate_scale, args.lengths)):
        raise ConfigError("--window, --time-scale, --rate-scale and --lengths need --trace "
                          "(or --lengths with --poisson)")
    return scenario, workload


def _lengths(text: str) -> Any:
    return {"trace": str(Path(text).resolve())} if Path(text).exists() else text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 on a configuration or input error)."""
    args = build_parser().parse_args(argv)
    try:
        scenario, overrides = resolve(args)
        seed = scenario.seed if args.seed is None else args.seed
        import numpy as np

        workload = scenario.build_workload(np.random.default_rng(seed), overrides)
        if args.poisson and args.requests and len(workload) > args.requests:

            n = args.requests
            workload = Workload(workload.arrival_s[:n], workload.prompt_tokens[:n],
                                workload.output_tokens[:n], workload.source, workload.metadata)
    except (ConfigError, ProfileError, WorkloadConfigError, TraceFormatError) as err:
        print(f"rlscale simulate: {err}", file=sys.stderr)
        return 2
    out = args.out or Path("runs") / f"simulate-{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    result = simulate(scenario, seed + 1, workload=workload, progress=not args.quiet,
                      max_s=args.max_sim_s)
    summary = {"seed": seed, "workload": workload.source, **result.summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "config.yaml").write_text(yaml.safe_dump({
        "argv": list(argv) if argv is not None else sys.argv[1:], "scenario": scenario.source
        or scenario.name, "seed": seed, "workload_overrides": overrides}, sort_keys=False))
    if args.per_request_csv:
        result.cluster.log.write_csv(out / "requests.csv")
    print_summary(summary)
    print(f"wrote {out / 'summary.json'}")
    return 0


def describe_workload(summary: dict[str, Any]) -> str:
    """A one-line description of the replayed workload for the table's title: where it came
    from (the trace file, or the generators by name) and its size, duration and mean rate."""
    source = str(summary["workload"])
    if source.startswith("generated: "):
        kinds = dict.fromkeys(re.findall(r"\b([A-Z][A-Za-z]+)\(", source))
        source = "generated " + " + ".join(kinds) if kinds else source
    requests, simulated_s = int(summary["requests"]), float(summary["simulated_s"])
    rate = f", {requests / simulated_s:.1f} req/s" if simulated_s > 0 else ""
    return f"{source}: {requests:,} requests over {simulated_s / 60:.0f} simulated min{rate}"


def print_summary(summary: dict[str, Any]) -> None:
    """The headline numbers, failures by reason, and a table per pool."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['scenario']} - {describe_workload(summary)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    slo = summary["slo"]
    failures = ", ".join(f"{reason} {count:,} ({count / max(summary['requests'], 1):.1%})"
                         for reason, count in summary.get("failed_by_reason", {}).items()
                         if count) or "none"
    rows = [
        ("requests (completed / failed)",
         f"{summary['requests']:,} ({summary['completed']:,} / {summary['failed']:,})"),
        ("failed by reason", failures),
        (f"SLO attainment (TTFT<={slo['ttft_s']}s, ITL<={slo['itl_s']}s)",
         f"{summary['slo_attainment']:.1%}"),
        ("TTFT p50 / p90 / p99 (s)", _triple(summary["ttft_s"])),
        ("inter-token latency p50 / p90 / p99 (s)", _triple(summary["itl_s"])),
        ("end-to-end p50 / p90 / p99 (s)", _triple(summary["e2e_s"])),
        ("GPU-hours / cost (USD)", f"{summary['gpu_hours']:.2f} / ${summary['cost_usd']:.2f}"),
        ("mean KV-cache usage", f"{summary['mean_kv_cache_usage']:.1%}"),
        ("output tokens/s", f"{summary['output_tokens_per_s']:.0f}"),
        ("preemptions", str(summary["preemptions"])),
        ("wall time (s) / simulated requests per wall-s",
         f"{summary['sim_wall_s']:.2f} / {summary['sim_requests_per_wall_s']:.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    pools = Table(title="per pool")
    pools.add_column("pool", overflow="fold")
    for column in ("replicas", "requests", "GPU-h", "cost", "KV usage"):
        pools.add_column(column, justify="right", no_wrap=True)
    for name, pool in summary.get("pools", {}).items():
        pools.add_row(name, str(pool["desired_replicas"]), f"{pool['requests']:,}",
                      f"{pool['gpu_hours']:.2f}", f"${pool['cost_usd']:.2f}",
                      f"{pool['mean_kv_cache_usage']:.1%}")
    console = Console()
    console.print(table)
    console.print(pools)


def _triple(stats: dict[str, float]) -> str:
    return f"{stats['p50']:.3f} / {stats['p90']:.3f} / {stats['p99']:.3f}"


if __name__ == "__main__":
    sys.exit(main())
