"""Environment steps per second: one process, random actions, request-level engine.

    python benchmarks/env_speed.py [--scenario hetero-3pool] [--steps 600]

Prints steps per wall-second over whole episodes (resets included), the simulated requests per
step, and how the time splits between simulation and observation building. The step-by-step
engine is measured in the same run as the baseline (``--baseline-steps`` steps).
"""

from __future__ import annotations

import argparse
import sys
import time

from rlscale.envs import LLMClusterEnv
from rlscale.metrics.observation import ObservationBuilder


def run(scenario: str, steps: int, seed: int = 0,
        step_by_step: bool = False) -> tuple[float, float, float]:
    """Steps per second, requests per step and the share of time spent observing."""
    env = LLMClusterEnv(scenario, step_by_step=step_by_step)
    env.action_space.seed(seed)
    observe_s = 0.0
    original = ObservationBuilder.observe

    def timed(builder: ObservationBuilder, history):  # type: ignore[no-untyped-def]
        nonlocal observe_s
        started = time.perf_counter()
        result = original(builder, history)
        observe_s += time.perf_counter() - started
        return result

    ObservationBuilder.observe = timed  # type: ignore[method-assign]
    try:
        requests = 0
        done = 0
        started = time.perf_counter()
        env.reset(seed=seed)
        while done < steps:
            _, _, _terminated, _truncated, info = env.step(env.action_space.sample())
            requests += info["requests"]
            done += 1
            if done % env.config.max_episode_steps == 0:
                env.reset()
        wall = time.perf_counter() - started
    finally:
        ObservationBuilder.observe = original  # type: ignore[method-assign]
    return done / wall, requests / done, observe_s / wall


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="hetero-3pool")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--baseline-steps", type=int, default=120)
    args = parser.parse_args(argv)
    rate, per_step, observe_share = run(args.scenario, args.steps)
    base_rate, _, _ = run(args.scenario, args.baseline_steps, step_by_step=True)
    print(f"scenario {args.scenario}, random actions, {args.steps} steps, one process")
    print(f"request-level engine: {rate:,.1f} steps/s ({per_step:,.0f} requests ended per step; "
          f"{observe_share:.1%} of the time building observations)")
    print(f"step-by-step engine (baseline, same run): {base_rate:,.1f} steps/s -> "
          f"{rate / base_rate:.1f}x")
    print(f"target: >= 50 steps/s -> {'met' if rate >= 50 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
