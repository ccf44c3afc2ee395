"""Environment steps per second: one process, random actions, each engine.

    python benchmarks/env_speed.py [--scenario hetero-3pool] [--steps 600] [--fast-steps 3000]

Prints steps per wall-second (and per CPU-second of this process, the fairer figure on a shared
machine) over whole episodes (resets included), the simulated requests per step, and how the
time splits between simulation and observation building, for the request-level engine, the
fast engine (``engine.mode: fast``; with its compiled loops when numba is installed, and with
its plain numpy path too) and, as the baseline, the step-by-step engine (``--baseline-steps``
steps), all in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time

from rlscale.envs import LLMClusterEnv
from rlscale.metrics.observation import ObservationBuilder
from rlscale.sim.fluid import kernels


def run(scenario: str, steps: int, seed: int = 0, step_by_step: bool = False,
        mode: str = "request") -> tuple[float, float, float, float]:
    """Steps per wall-second, requests per step, the share of time spent observing, and
    steps per CPU-second."""
    env = LLMClusterEnv(scenario, {"engine": {"mode": mode}}, step_by_step=step_by_step)
    env.action_space.seed(seed)
    observe_s = 0.0
    original = ObservationBuilder.observe

    def timed(builder: ObservationBuilder, history):  # type: ignore[no-untyped-def]
        nonlocal observe_s
        started = time.perf_counter()
        result = original(builder, history)
        observe_s += time.perf_counter() - started
        return result

    ObservationBuilder.observe = timed  # type: ignore[method-assign,assignment]
    try:
        requests = 0
        done = 0
        started = time.perf_counter()
        cpu_started = time.process_time()
        env.reset(seed=seed)
        while done < steps:
            _, _, _terminated, _truncated, info = env.step(env.action_space.sample())
            requests += info["requests"]
            done += 1
            if done % env.config.max_episode_steps == 0:
                env.reset()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        ObservationBuilder.observe = original  # type: ignore[method-assign]
    return done / wall, requests / done, observe_s / wall, done / cpu


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="hetero-3pool")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--baseline-steps", type=int, default=120)
    parser.add_argument("--fast-steps", type=int, default=3000)
    args = parser.parse_args(argv)
    rate, per_step, observe_share, cpu_rate = run(args.scenario, args.steps)
    compiled = kernels.jit_enabled()
    if compiled:  # the plain path first: the compiled run then pays no first-use costs
        kernels.set_jit(False)
        plain, _, _, plain_cpu = run(args.scenario, args.fast_steps, mode="fast")
        kernels.set_jit(True)
        run(args.scenario, 10, mode="fast")  # load (or compile) the compiled loops
    fast, fast_per_step, fast_observe, fast_cpu = run(args.scenario, args.fast_steps,
                                                      mode="fast")
    base_rate, _, _, base_cpu = run(args.scenario, args.baseline_steps, step_by_step=True)
    print(f"scenario {args.scenario}, random actions, one process")
    print(f"request-level engine: {rate:,.1f} steps/s, {cpu_rate:,.1f} steps/CPU-s "
          f"({per_step:,.0f} requests ended per step; {observe_share:.1%} of the time building "
          f"observations; {args.steps} steps)")
    print(f"fast engine: {fast:,.1f} steps/s, {fast_cpu:,.1f} steps/CPU-s ({fast_per_step:,.0f} "
          f"requests ended per step; {fast_observe:.1%} observing; {args.fast_steps} steps) -> "
          f"{fast / rate:.1f}x wall, {fast_cpu / cpu_rate:.1f}x CPU; "
          f"{'compiled loops' if compiled else 'plain numpy path (numba not installed)'}")
    if compiled:
        print(f"fast engine, plain numpy path (same numbers): {plain:,.1f} steps/s, "
              f"{plain_cpu:,.1f} steps/CPU-s -> the compiled loops are {fast_cpu / plain_cpu:.2f}x"
              f" per CPU-second")
    print(f"step-by-step engine (baseline, same run): {base_rate:,.1f} steps/s, "
          f"{base_cpu:,.1f} steps/CPU-s -> request-level is {rate / base_rate:.1f}x")
    print(f"targets: request-level >= 50 steps/s -> {'met' if rate >= 50 else 'NOT met'}; "
          f"fast >= 1,000 steps/s -> {'met' if fast >= 1000 else 'NOT met'}; "
          f"fast >= 20x request-level -> {'met' if fast >= 20 * rate else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
