"""``rlscale twin`` / ``python -m rlscale.twin``: run a simulated cluster behind a Kubernetes API.

Examples::

    rlscale twin                                   # the default scenario in real time
    rlscale twin --scenario single-pool --speed 30 --port 8001
    rlscale twin --scenario my.yaml --speed 60 --prometheus-sd /tmp/twin-targets.json
    rlscale twin --kubeconfig admin.kubeconfig     # virtual GPU nodes of a real API server

It prints the API URL, the files written (kubeconfig, controller config) and the pods'
``/metrics`` endpoints, then a status line every few seconds; SIGINT or SIGTERM stop it.
Exit codes: 0 after a clean stop or the end of the run, 2 for bad arguments or an unknown or
invalid scenario, 1 when it cannot start (a port in use, the ``twin`` extra missing).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rlscale.configschema import ConfigError
from rlscale.logformat import LOG_FORMATS, configure_logging
from rlscale.metrics.exposition import Spelling
from rlscale.sim.scenario import DEFAULT_SCENARIO, load_scenario
from rlscale.sim.workload import TraceFormatError, WorkloadConfigError

if TYPE_CHECKING:
    from rlscale.twin.runner import Twin

SPELLINGS: tuple[Spelling, ...] = ("new", "old", "underscore")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``rlscale twin``."""
    parser = argparse.ArgumentParser(
        prog="rlscale twin", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO,
                        help=f"built-in scenario name or YAML path (default {DEFAULT_SCENARIO})")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated seconds per wall second (default 1: real time)")
    parser.add_argument("--port", type=int, default=0,
                        help="Kubernetes API port on 127.0.0.1 (default 0: any free port)")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="port of every pod's /metrics on its own 127.0.x.y address "
                             "(default 0: a free port)")
    parser.add_argument("--namespace", default="llm", help="namespace of the pools (llm)")
    parser.add_argument("--route", default="vllm", help="the HTTPRoute's name (vllm)")
    parser.add_argument("--kubeconfig", default=None, metavar="FILE",
                        help="attach to this kubeconfig's API server instead of serving one: "
                             "register GPU nodes, bind and run the pools' Pods (labelled "
                             "rlscale.io/pool) as the simulator says, follow the HTTPRoute")
    parser.add_argument("--kubeconfig-out", default="twin.kubeconfig",
                        help="kubeconfig to write (default twin.kubeconfig; '' for none)")
    parser.add_argument("--controller-config-out", default="twin-controller.yaml",
                        help="controller config to write (default twin-controller.yaml; '' "
                             "for none)")
    parser.add_argument("--prometheus-sd", default=None, metavar="PATH",
                        help="keep a Prometheus file_sd JSON of the pods' /metrics targets here")
    parser.add_argument("--seed", type=int, default=None,
                        help="simulator seed (default: the scenario's)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="simulated seconds to run (default: the workload's duration)")
    parser.add_argument("--tick", type=float, default=0.2, metavar="S",
                        help="wall seconds between simulator steps (default 0.2)")
    parser.add_argument("--status-every", type=float, default=5.0, metavar="S",
                        help="wall seconds between status lines (default 5; 0: none)")
    parser.add_argument("--metric-names", choices=SPELLINGS, default="new",
                        help="vLLM metric names the pods serve: new (vLLM >= 0.11), old "
                             "(gpu_cache_usage_perc, time_per_output_token_seconds) or "
                             "underscore (vllm_ instead of vllm:)")
    parser.add_argument("--log-format", default="auto", choices=LOG_FORMATS,
                        help="status lines and logs: text (for people), json (one object per "
                             "line) or auto (default: text on a terminal, else json)")
    return parser


async def _serve(twin: Twin) -> None:
    stop = asyncio.Event()
    await twin.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await twin.run(stop)
    finally:
        await twin.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the twin; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging("WARNING", args.log_format)
    try:
        from rlscale.twin.attach import AttachError
        from rlscale.twin.runner import Twin, TwinError, TwinOptions
    except ImportError as err:
        print(f"rlscale twin: needs the 'twin' extra (Python >= 3.11): pip install -e "
              f"'.[twin]' ({err})", file=sys.stderr)
        return 1
    try:
        scenario = load_scenario(args.scenario)
        options = TwinOptions(
            scenario=args.scenario, speed=args.speed, port=args.port,
            metrics_port=args.metrics_port, namespace=args.namespace, route=args.route,
            kubeconfig_out=args.kubeconfig_out or None,
            controller_config_out=args.controller_config_out or None,
            prometheus_sd=args.prometheus_sd, seed=args.seed, duration_s=args.duration,
            tick_s=args.tick, status_every_s=args.status_every, spelling=args.metric_names,
            log_format=args.log_format, kubeconfig=args.kubeconfig)
        twin = Twin(options, scenario)
    except (ConfigError, WorkloadConfigError, TraceFormatError) as err:
        print(f"rlscale twin: {err}", file=sys.stderr)
        return 2
    except (TwinError, AttachError) as err:
        print(f"rlscale twin: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(twin))
    except (TwinError, AttachError) as err:
        print(f"rlscale twin: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
