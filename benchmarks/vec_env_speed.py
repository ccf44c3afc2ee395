"""Vectorized rollouts: environment steps per second of SB3 vector envs, random actions.

    python benchmarks/vec_env_speed.py [--steps 2400] [--request-steps 240]

Builds the training vector env (``rlscale.training.ppo.make_vec_env``) as the training config
would, for: the fast engine with ``vec_env: inprocess`` and ``n_envs: 8`` (one process), the
fast engine with ``vec_env: subprocess`` and ``n_envs: 2`` (a process per env), and the
request-level engine with ``subprocess`` and 2 envs (the default). For each it steps random
actions (episodes reset inside, as in training) and prints environment steps per wall-second
and per CPU-second of every process involved (this one and the workers, read from
``/proc/<pid>/stat``), the fairer figure on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.training.config import load_train_config
from rlscale.training.ppo import make_vec_env

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux ``/proc``)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


def measure(engine: str, vec_env: str, n_envs: int, steps: int) -> tuple[float, float]:
    """(env steps per wall-second, per CPU-second) over ``steps`` env steps in all."""
    config = load_train_config(None, [f"rollout_engine={engine}", f"vec_env={vec_env}",
                                      f"n_envs={n_envs}"])
    with tempfile.TemporaryDirectory() as folder:
        venv: Any = make_vec_env(config, Path(folder))
        try:
            pids = [os.getpid()] + [p.pid for p in getattr(venv, "processes", [])]
            rng = np.random.default_rng(0)
            nvec = venv.action_space.nvec
            venv.reset()
            rounds = max(1, steps // n_envs)
            cpu_started, started = _cpu_s(pids), time.perf_counter()
            for _ in range(rounds):
                venv.step(rng.integers(0, nvec, size=(n_envs, len(nvec))))
            wall = time.perf_counter() - started
            cpu = _cpu_s(pids) - cpu_started
        finally:
            venv.close()
    done = rounds * n_envs
    return done / wall, done / max(cpu, 1e-9)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2400, help="env steps, fast engine")
    parser.add_argument("--request-steps", type=int, default=240,
                        help="env steps, request-level engine")
    args = parser.parse_args(argv)
    runs = [("fast", "inprocess", 8, args.steps), ("fast", "subprocess", 2, args.steps),
            ("request", "subprocess", 2, args.request_steps)]
    for engine, vec_env, n_envs, steps in runs:
        wall, cpu = measure(engine, vec_env, n_envs, steps)
        print(f"{engine:7s} engine, vec_env {vec_env:10s} n_envs {n_envs}: {wall:7.1f} steps/s, "
              f"{cpu:7.1f} steps/CPU-s ({steps} steps)", flush=True)
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
