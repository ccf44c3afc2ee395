"""PPO training of the joint scaling-and-routing policy, top to bottom.

:func:`train` reads like a recipe: tune the baselines on training windows, build parallel
environments with observation normalization, create (or resume) a MaskablePPO model, learn with
a progress bar, TensorBoard logging, checkpoints and periodic validation against the tuned
baselines, export the best policy as a torch-free bundle, and judge it on the held-out test
windows. stable-baselines3 does the learning; this module only wires it to rlscale.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from rlscale.agents.bundle.io import attach_evaluation
from rlscale.envs.cluster_env import LLMClusterEnv
from rlscale.envs.config import env_config
from rlscale.evaluate.policies import PolicySpec
from rlscale.evaluate.tune import load_tuned, save_tuned, tune
from rlscale.sim.scenario import load_scenario
from rlscale.training.callbacks import (
    DomainMetricsCallback,
    ObservationRangeCallback,
    ProgressLogCallback,
    TimeBudgetCallback,
    ValidationCallback,
)
from rlscale.training.config import TrainConfig
from rlscale.training.export import export_run_bundle
from rlscale.training.imitation import imitate
from rlscale.training.report import final_evaluation as judge
from rlscale.training.report import plot_learning_curve

CHECKPOINT_PREFIX = "rl_model"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a run depends on (saved with every run and bundle)."""
    import importlib.metadata as metadata

    versions = {"python": platform.python_version()}
    for name in ("rlscale", "numpy", "torch", "stable-baselines3", "sb3-contrib", "gymnasium"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def make_env_factory(config: TrainConfig, rank: int, monitor_dir: Path) -> Any:
    """A picklable factory of one training environment (time limit and episode monitor)."""

    def factory() -> gym.Env[Any, Any]:
        from stable_baselines3.common.monitor import Monitor

        overrides = {"reward": dict(config.reward), "engine": {"mode": config.rollout_engine}}
        env = LLMClusterEnv(config.scenario, overrides=overrides, workloads=config.mixture())
        limited = gym.wrappers.TimeLimit(env, env.config.max_episode_steps)
        monitored = Monitor(limited, str(monitor_dir / f"env-{rank}"),
                            info_keywords=("slo_attainment", "cost_usd"))
        monitored.reset(seed=config.seed * 1000 + rank)
        return monitored

    return factory


def make_vec_env(config: TrainConfig, monitor_dir: Path) -> Any:
    """The ``n_envs`` training environments as one SB3 ``VecEnv``: ``SubprocVecEnv`` (a
    process each) or, with ``vec_env: inprocess`` or a single env, ``DummyVecEnv`` (all in
    this process, stepped one after the other)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    factories = [make_env_factory(config, rank, monitor_dir) for rank in range(config.n_envs)]
    if config.n_envs > 1 and config.vec_env == "subprocess":
        return SubprocVecEnv(factories, start_method="fork")
    return DummyVecEnv(factories)


def latest_checkpoint(directory: Path) -> tuple[Path, Path, int] | None:
    """(model zip, VecNormalize pickle, steps) of the newest complete checkpoint, or None."""
    best: tuple[Path, Path, int] | None = None
    for model_path in directory.glob(f"{CHECKPOINT_PREFIX}_*_steps.zip"):
        match = re.search(r"_(\d+)_steps\.zip$", model_path.name)
        if match is None:
            continue
        steps = int(match.group(1))
        stats = directory / f"{CHECKPOINT_PREFIX}_vecnormalize_{steps}_steps.pkl"
        if stats.exists() and (best is None or steps > best[2]):
            best = (model_path, stats, steps)
    return best


def train(config: TrainConfig, out: Path, *, resume: bool = False, progress: bool = True,
          validate: bool = True, final_evaluation: bool = True,
          workers: int | None = None) -> dict[str, Any]:
    """Train, export and evaluate; returns paths and figures of the run."""
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.vec_env import VecNormalize

    # One intra-op thread: the cores belong to the simulator processes; torch's own thread
    # pool would spin against them while they step (the networks here are tiny).
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
    (out / "versions.json").write_text(json.dumps(library_versions(), indent=1) + "\n")
    scenario = load_scenario(config.scenario)

    # 1. Tune the baselines' knobs on training windows (fair comparison, done once per run).
    tuned_path = out / "tuned.json"
    baseline_names = sorted({*config.eval.baselines, *config.eval.final_policies})
    if validate or final_evaluation:
        if tuned_path.exists():
            tuned = load_tuned(tuned_path, [PolicySpec(n) for n in baseline_names])
        else:
            tuned, record = tune(scenario, config.scenario, [PolicySpec(n) for n in
                                                             baseline_names],
                                 workers=workers, progress=progress)
            save_tuned(tuned_path, record)
    else:
        tuned = [PolicySpec(n) for n in baseline_names]

    # 2. Parallel environments, observations (and rewards) normalized.
    monitor_dir = out / "monitor"
    monitor_dir.mkdir(exist_ok=True)
    venv = make_vec_env(config, monitor_dir)
    checkpoints = out / "checkpoints"
    found = latest_checkpoint(checkpoints) if resume else None
    if found is not None:
        model_path, stats_path, steps_done = found
        vec_env = VecNormalize.load(str(stats_path), venv)
        model = MaskablePPO.load(str(model_path), env=vec_env, device="cpu")
    else:
        steps_done = 0
        vec_env = VecNormalize(venv, norm_obs=True, norm_reward=config.normalize_reward,
                               clip_obs=10.0, gamma=config.ppo.gamma)
        activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[config.ppo.activation]
        model = MaskablePPO(
            "MlpPolicy", vec_env, learning_rate=config.ppo.learning_rate,
            n_steps=config.ppo.n_steps, batch_size=config.ppo.batch_size,
            n_epochs=config.ppo.n_epochs, gamma=config.ppo.gamma,
            gae_lambda=config.ppo.gae_lambda, clip_range=config.ppo.clip_range,
            ent_coef=config.ppo.ent_coef, seed=config.seed, device="cpu",
            tensorboard_log=str(out / "tensorboard"),
            policy_kwargs={"net_arch": list(config.ppo.net_arch),
                           "activation_fn": activation})

    # 3. A warm start: behaviour cloning and DAgger from the expert heuristic (fresh runs).
    training_started = time.monotonic()
    imitated = found is None and config.imitation.steps > 0
    if imitated:

        control = env_config(scenario).control
        imitate(model, vec_env, config.imitation, gamma=config.ppo.gamma,
                replica_step=control.replica_step, weight_levels=control.weight_levels,
                seed=config.seed, out=out, progress=progress)
        checkpoints.mkdir(parents=True, exist_ok=True)
        model.save(str(checkpoints / f"{CHECKPOINT_PREFIX}_0_steps"))
        vec_env.save(str(checkpoints / f"{CHECKPOINT_PREFIX}_vecnormalize_0_steps.pkl"))

    # 4. Learn, with checkpoints, domain metrics and validation against the tuned baselines.
    ranges = ObservationRangeCallback(out / "observation_range.npz")
    callbacks: list[Any] = [
        CheckpointCallback(max(1, config.checkpoint_every_steps // config.n_envs),
                           str(checkpoints), name_prefix=CHECKPOINT_PREFIX,
                           save_vecnormalize=True),
        DomainMetricsCallback(),
        ranges,
    ]
    validation = None
    if validate and config.eval.every_steps > 0:
        validation = ValidationCallback(config, scenario, out, ranges,
                                        [t for t in tuned if t.name in config.eval.baselines],
                                        workers=workers, validate_at_start=imitated)
        callbacks.append(validation)
    budget = None
    if config.time_budget_min is not None:
        budget = TimeBudgetCallback(
            config.time_budget_min * 60.0, training_started, time.monotonic,
            paused=lambda: validation.elapsed_s if validation is not None else 0.0)
        callbacks.append(budget)
    remaining = max(0, config.total_timesteps - steps_done)
    on_terminal = progress and sys.stderr.isatty()
    if progress and not on_terminal:
        callbacks.append(ProgressLogCallback(remaining))
    try:
        model.learn(total_timesteps=remaining, callback=CallbackList(callbacks),
                    progress_bar=on_terminal, reset_num_timesteps=found is None,
                    tb_log_name="ppo")
    finally:
        venv.close()
    model.save(str(out / "final_model"))
    vec_env.save(str(out / "final_vecnormalize.pkl"))

    # 5. Export the final policy; keep the best validated one as the run's bundle.

    final_bundle = export_run_bundle(model, vec_env, out / "final_bundle", config, scenario,
                                     ranges.range(), evaluation={})
    bundle = out / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    best = validation.best_bundle if validation is not None else None
    shutil.copytree(best if best is not None else final_bundle, bundle)

    # 6. Judge it on the held-out windows with the tuned baselines.
    result: dict[str, Any] = {"bundle": str(bundle), "steps": int(model.num_timesteps)}
    if budget is not None:
        result["time_budget"] = {"minutes": config.time_budget_min,
                                 "used_min": budget.used_s() / 60.0,
                                 "stopped_at_steps": budget.stopped_at_steps}
    if final_evaluation:

        judged = judge(config, scenario, out, bundle, tuned, workers=workers, progress=progress)
        attach_evaluation(bundle, {key: judged[key] for key in ("split", "seeds", "ratios",
                                                                "aggregated")})
        result.update(evaluation=judged["evaluation"], ratios=judged["ratios"])

    result["learning_curve"] = str(plot_learning_curve(out, validation))
    return result

