"""stable-baselines3 callbacks for rlscale's training: domain metrics, observation ranges,
and validation against the tuned baselines (which keeps the best policy)."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.callbacks import BaseCallback

from rlscale.envs.config import env_config
from rlscale.envs.splits import scenario_splits
from rlscale.evaluate.policies import PolicySpec
from rlscale.evaluate.report import aggregate
from rlscale.evaluate.runner import run_tasks, tasks_for
from rlscale.evaluate.tune import tuning_config
from rlscale.progress import ProgressLog
from rlscale.sim.scenario import Scenario
from rlscale.training.config import TrainConfig
from rlscale.training.export import export_run_bundle


class ProgressLogCallback(BaseCallback):
    """Timestamped progress lines on stderr every 10 % of the PPO steps (where SB3's progress
    bar, made for a terminal, shows nothing: redirected output, a Job's log)."""

    def __init__(self, total_timesteps: int) -> None:
        super().__init__()
        self.total_timesteps = total_timesteps
        self._log: ProgressLog | None = None
        self._start = 0

    def _on_training_start(self) -> None:
        self._start = self.num_timesteps
        self._log = ProgressLog("PPO steps", self.total_timesteps)

    def _on_step(self) -> bool:
        if self._log is not None:
            self._log.update(self.num_timesteps - self._start)
        return True


class TimeBudgetCallback(BaseCallback):
    """Stops PPO once ``budget_s`` seconds of training have passed since ``started_s``
    (``clock`` time), not counting the seconds ``paused()`` reports (validation runs)."""

    def __init__(self, budget_s: float, started_s: float, clock: Callable[[], float],
                 paused: Callable[[], float] = lambda: 0.0) -> None:
        super().__init__()
        self.budget_s = budget_s
        self.started_s = started_s
        self.clock = clock
        self.paused = paused
        self.stopped_at_steps: int | None = None

    def used_s(self) -> float:
        """Training seconds spent so far."""
        return self.clock() - self.started_s - self.paused()

    def _on_step(self) -> bool:
        if self.used_s() < self.budget_s:
            return True
        self.stopped_at_steps = self.num_timesteps
        return False


class DomainMetricsCallback(BaseCallback):
    """Logs what the cluster did during each rollout: SLO attainment (request-weighted), GPU
    cost per step, replicas and shield interventions, under ``charts/``."""

    def __init__(self) -> None:
        super().__init__()
        self._reset()

    def _reset(self) -> None:
        self.requests = 0
        self.met = 0.0
        self.cost = 0.0
        self.steps = 0
        self.replicas = 0.0
        self.shield = 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "requests" not in info:
                continue
            self.requests += info["requests"]
            self.met += info["slo_attainment"] * info["requests"]
            self.cost += info.get("cost_usd", 0.0)
            self.replicas += sum(info.get("replicas", []))
            self.shield += len(info.get("shield", []))
            self.steps += 1
        return True

    def _on_rollout_end(self) -> None:
        if self.steps:
            attainment = self.met / self.requests if self.requests else 1.0
            self.logger.record("charts/slo_attainment", attainment)
            self.logger.record("charts/cost_usd_per_step", self.cost / self.steps)
            self.logger.record("charts/replicas", self.replicas / self.steps)
            self.logger.record("charts/shield_interventions_per_step", self.shield / self.steps)
        self._reset()


class ObservationRangeCallback(BaseCallback):
    """Tracks the range of raw (unnormalized) observations seen in training; the bundle stores
    it and the shield falls back to a heuristic outside it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.low: NDArray[np.float64] | None = None
        self.high: NDArray[np.float64] | None = None
        if path.exists():
            with np.load(path) as saved:
                self.low, self.high = saved["low"], saved["high"]

    def _on_step(self) -> bool:
        get_original = getattr(self.training_env, "get_original_obs", None)
        raw = get_original() if get_original is not None else self.locals.get("new_obs")
        if raw is None:
            return True
        batch = np.asarray(raw, dtype=np.float64)
        low, high = batch.min(axis=0), batch.max(axis=0)
        self.low = low if self.low is None else np.minimum(self.low, low)
        self.high = high if self.high is None else np.maximum(self.high, high)
        return True

    def _on_rollout_end(self) -> None:
        if self.low is not None and self.high is not None:
            np.savez(self.path, low=self.low, high=self.high)

    def range(self) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """(low, high) seen so far, or None before the first step."""
        if self.low is None or self.high is None:
            return None
        return self.low, self.high


def validation_score(row: dict[str, Any], slo_target: float) -> float:
    """Higher is better: cost counts only once the SLO target is met (dollars are negated);
    below the target, attainment decides."""
    if row["slo_attainment"] >= slo_target:
        return 1e6 - float(row["cost_usd"])
    return float(row["slo_attainment"])


class ValidationCallback(BaseCallback):
    """Every ``eval.every_steps``: export the policy, run it and the tuned baselines on the
    validation windows, log ``eval/``, and keep the best bundle (``validation/best``)."""

    def __init__(self, config: TrainConfig, scenario: Scenario, out: Path,
                 ranges: ObservationRangeCallback, baselines: list[PolicySpec],
                 workers: int | None = None, validate_at_start: bool = False) -> None:
        super().__init__()
        self.validate_at_start = validate_at_start
        self.config = config
        self.scenario = scenario
        self.out = out / "validation"
        self.ranges = ranges
        self.baselines = baselines
        self.workers = workers
        self.every = config.eval.every_steps
        self.next_at = self.every
        self.best_score = -math.inf
        self.best_bundle: Path | None = None
        self.history: list[dict[str, Any]] = []
        self.baseline_rows: list[dict[str, Any]] | None = None
        self.elapsed_s = 0.0
        """Seconds spent in :meth:`validate` (not training time)."""

        self.slo_target = tuning_config(scenario).slo_target
        history = self.out / "history.json"
        if history.exists():
            saved = json.loads(history.read_text())
            self.history = saved["history"]
            self.best_score = saved["best_score"]
            best = saved.get("best_bundle")
            self.best_bundle = Path(best) if best else None

    def _on_training_start(self) -> None:
        self.next_at = (self.num_timesteps // self.every + 1) * self.every
        if self.validate_at_start:  # the warm-started policy is a candidate too
            self.validate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_at:
            self.next_at += self.every
            self.validate()
        return True

    def target(self) -> float:
        """The SLO attainment a policy must reach before its cost counts: the tuning target,
        the ``eval.match_attainment_of`` baseline's attainment on the validation windows or
        ``eval.min_slo_attainment``, whichever is highest."""
        match = self.config.eval.match_attainment_of
        rows = [r for r in self.baseline_rows or [] if r["policy"].split("(")[0] == match]
        return max([self.slo_target, self.config.eval.min_slo_attainment]
                   + [float(r["slo_attainment"]) for r in rows])

    def validate(self) -> dict[str, Any]:
        """Run the current policy and the baselines on the validation windows now."""
        started = time.monotonic()
        try:
            return self._validate()
        finally:
            self.elapsed_s += time.monotonic() - started

    def _validate(self) -> dict[str, Any]:
        steps = self.num_timesteps
        bundle = export_run_bundle(self.model, self.training_env, self.out / f"step-{steps}",
                                   self.config, self.scenario, self.ranges.range(),
                                   evaluation={})
        windows = scenario_splits(self.scenario, env_config(self.scenario).episode.duration_s)
        chosen = windows.windows(self.config.eval.split)
        seeds = self.config.eval.seeds
        if self.baseline_rows is None:
            self.baseline_rows = aggregate(run_tasks(
                tasks_for(self.config.scenario, self.baselines, chosen, seeds,
                          self.config.eval.split), workers=self.workers, progress=False))
        mine = aggregate(run_tasks(
            tasks_for(self.config.scenario, [PolicySpec("ppo", {"bundle": str(bundle)})],
                      chosen, seeds, self.config.eval.split),
            workers=self.workers, progress=False))[0]
        target = self.target()
        score = validation_score(mine, target)
        self.logger.record("eval/slo_attainment", mine["slo_attainment"])
        self.logger.record("eval/cost_usd", mine["cost_usd"])
        for row in self.baseline_rows:
            name = row["policy"].split("(")[0]
            self.logger.record(f"eval/{name}_cost_usd", row["cost_usd"])
            self.logger.record(f"eval/{name}_slo_attainment", row["slo_attainment"])
        entry = {"steps": steps, "slo_attainment": mine["slo_attainment"],
                 "cost_usd": mine["cost_usd"], "score": score, "target": target,
                 "baselines": {r["policy"]: {"slo_attainment": r["slo_attainment"],
                                             "cost_usd": r["cost_usd"]}
                               for r in self.baseline_rows}}
        self.history.append(entry)
        if score > self.best_score:
            self.best_score = score
            best = self.out / "best"
            if best.exists():
                shutil.rmtree(best)
            shutil.copytree(bundle, best)
            self.best_bundle = best
        (self.out / "history.json").write_text(json.dumps(
            {"history": self.history, "best_score": self.best_score,
             "best_bundle": str(self.best_bundle) if self.best_bundle else None}, indent=1))
        return entry
