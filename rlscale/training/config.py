"""Training configuration: a YAML file (``rlscale/configs/train.yaml`` by default) plus overrides.

Every field is validated when read; an error names it
(``train.ppo.batch_size: expected an integer in [8, inf], got 4``). The resolved config is saved
with every run (``config.yaml``) and inside the policy bundle.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rlscale.configschema import ConfigError, Section
from rlscale.evaluate.policies import heuristic_knobs, parse_policies
from rlscale.evaluate.suite import held_out_families as suite_families
from rlscale.sim.backend import MODES
from rlscale.sim.workload.config import WorkloadConfigError
from rlscale.sim.workload.mixture import WorkloadMixture, parse_mixture

ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class PPOConfig:
    """MaskablePPO hyperparameters (stable-baselines3 names and meanings)."""

    learning_rate: float = 3e-4
    n_steps: int = 512
    batch_size: int = 256
    n_epochs: int = 10
    gamma: float = 0.97
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.005
    net_arch: tuple[int, ...] = (128, 128)
    activation: str = "tanh"


@dataclass(frozen=True)
class ImitationConfig:
    """Behaviour cloning and DAgger from a heuristic expert before PPO (``steps`` 0: off).

    Attributes:
        expert: the expert policy, as ``rlscale evaluate --policies`` spells it
            (``planner:headroom=0.2``); its decisions are encoded in the PPO action space
            (replica changes clipped to ``±replica_step``, weights rounded to the levels).
        steps: labelled environment steps collected per round (over all environments).
        rounds: 1 is behaviour cloning on the expert's own states; each further round is a
            DAgger round: the learner acts (the expert with probability ``0.5**round``) and the
            expert labels the states the learner reaches.
        epochs / batch_size / learning_rate: the supervised fit (Adam) after each round, of
            the actor (cross-entropy on the expert's actions) and the critic (discounted
            normalized returns of the collected episodes).
    """

    expert: str = "planner:headroom=0.2"
    steps: int = 0
    rounds: int = 2
    epochs: int = 15
    batch_size: int = 256
    learning_rate: float = 1e-3


@dataclass(frozen=True)
class EvalConfig:
    """Periodic validation during training and the closing evaluation.

    Attributes:
        every_steps: environment steps between validations (0: none).
        split / seeds: validation windows and seeds.
        baselines: tuned baselines the policy is compared with during training.
        final_split / final_seeds / final_policies: the closing evaluation.
        match_attainment_of: a baseline in ``baselines`` (or null): a validated policy only
            counts as better by cost once its SLO attainment reaches this baseline's on the
            same windows (and the scenario's tuning target); without it, the tuning target.
        min_slo_attainment: a floor on that target (0-1; 0: none).
    """

    every_steps: int = 40_000
    split: str = "validation"
    seeds: tuple[int, ...] = (0,)
    baselines: tuple[str, ...] = ("hpa", "planner")
    final_split: str = "test"
    final_seeds: tuple[int, ...] = (0, 1, 2)
    final_policies: tuple[str, ...] = ("static", "hpa", "kpa", "keda", "planner", "lookahead")
    match_attainment_of: str = ""
    min_slo_attainment: float = 0.0


VEC_ENVS = ("subprocess", "inprocess")
"""Ways to run the training environments (:attr:`TrainConfig.vec_env`)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``out`` is where it writes."""

    scenario: str = "hetero-3pool"
    total_timesteps: int = 120_000
    n_envs: int = 2
    vec_env: str = "subprocess"
    """How the ``n_envs`` environments run: ``subprocess`` (SB3's ``SubprocVecEnv``, one
    process each: for engines that keep a core busy) or ``inprocess`` (SB3's ``DummyVecEnv``,
    all in the training process: no pickling of observations between processes). One
    environment always runs in process."""
    seed: int = 0
    rollout_engine: str = "request"
    """Engine of the PPO and imitation rollouts: ``request`` or ``fast`` (see
    :class:`rlscale.envs.config.EngineConfig`). Validation, checkpoint selection and the
    closing evaluation run the request-level engine whatever this says."""
    reward: dict[str, float] = field(default_factory=dict)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    normalize_reward: bool = True
    checkpoint_every_steps: int = 10_000
    eval: EvalConfig = field(default_factory=EvalConfig)
    imitation: ImitationConfig = field(default_factory=ImitationConfig)
    time_budget_min: float | None = None
    """Minutes of training (the imitation warm start plus PPO's rollouts and updates; tuning
    and validation runs not counted) after which PPO stops, even before ``total_timesteps``;
    None: no limit. For comparisons at equal training time, e.g. of the rollout engines."""
    workloads: dict[str, Any] | None = None
    """The workload mixture training episodes draw from (``rlscale.sim.workload.mixture``);
    None: the scenario's own workload with ``episode.load_scale``."""

    def mixture(self) -> WorkloadMixture | None:
        """The validated workload mixture, or None."""
        return None if self.workloads is None else parse_mixture(
            self.workloads, held_out=held_out_families(), path="train.workloads")

    def as_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON (tuples become lists)."""
        plain: dict[str, Any] = _plain(asdict(self))
        return plain


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def default_config_text() -> str:
    """The packaged default training config (YAML)."""
    return resources.files("rlscale").joinpath("configs").joinpath("train.yaml").read_text()


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to nested ``data`` in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. ppo.learning_rate=1e-4), got "
                          f"{assignment!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string; people mean a number
        with contextlib.suppress(ValueError):
            value = float(value)
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def load_train_config(path: Path | None = None, overrides: list[str] | None = None
                      ) -> TrainConfig:
    """Read a training config (the packaged default when ``path`` is None) and overrides."""
    if path is not None and not path.is_file():
        raise ConfigError(f"training config {str(path)!r} does not exist")
    text = path.read_text() if path is not None else default_config_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"training config: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError("training config: expected a mapping at the top level")
    for assignment in overrides or []:
        apply_override(data, assignment)
    return train_config_from_dict(data)


def _int_list(section: Section, key: str, default: list[int]) -> tuple[int, ...]:
    value = section.raw(key, default)
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{section.path}.{key}: expected a non-empty list of integers, "
                          f"got {value!r}")
    return tuple(value)


def _optional_name(section: Section, key: str) -> str:
    """A name, or ``""`` when absent or null."""
    value = section.raw(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{section.path}.{key}: expected a name or null, got {value!r}")
    return value


def _str_list(section: Section, key: str, default: list[str]) -> tuple[str, ...]:
    value = section.raw(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{section.path}.{key}: expected a list of names, got {value!r}")
    return tuple(value)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validate a parsed training config (defaults: the dataclasses')."""
    dp, de, di, dt = PPOConfig, EvalConfig, ImitationConfig, TrainConfig
    top = Section(data, "train")
    p = top.section("ppo")
    ppo = PPOConfig(
        learning_rate=p.number("learning_rate", dp.learning_rate, min_value=0, strict_min=True),
        n_steps=p.integer("n_steps", dp.n_steps, min_value=8),
        batch_size=p.integer("batch_size", dp.batch_size, min_value=8),
        n_epochs=p.integer("n_epochs", dp.n_epochs, min_value=1),
        gamma=p.number("gamma", dp.gamma, min_value=0, max_value=1),
        gae_lambda=p.number("gae_lambda", dp.gae_lambda, min_value=0, max_value=1),
        clip_range=p.number("clip_range", dp.clip_range, min_value=0, strict_min=True),
        ent_coef=p.number("ent_coef", dp.ent_coef, min_value=0),
        net_arch=_int_list(p, "net_arch", list(dp.net_arch)),
        activation=p.string("activation", dp.activation, ACTIVATIONS),
    )
    p.finish()
    e = top.section("eval")
    evaluation = EvalConfig(
        every_steps=e.integer("every_steps", de.every_steps, min_value=0),
        split=e.string("split", de.split, ("validation", "test")),
        seeds=_int_list(e, "seeds", list(de.seeds)),
        baselines=_str_list(e, "baselines", list(de.baselines)),
        final_split=e.string("final_split", de.final_split, ("validation", "test")),
        final_seeds=_int_list(e, "final_seeds", list(de.final_seeds)),
        final_policies=_str_list(e, "final_policies", list(de.final_policies)),
        match_attainment_of=_optional_name(e, "match_attainment_of"),
        min_slo_attainment=e.number("min_slo_attainment", de.min_slo_attainment, min_value=0,
                                    max_value=1),
    )
    e.finish()
    if evaluation.match_attainment_of and (evaluation.match_attainment_of
                                           not in evaluation.baselines):
        raise ConfigError(f"train.eval.match_attainment_of: {evaluation.match_attainment_of!r} "
                          f"is not one of train.eval.baselines {list(evaluation.baselines)}")
    i = top.section("imitation")
    imitation = ImitationConfig(
        expert=i.string("expert", di.expert),
        steps=i.integer("steps", di.steps, min_value=0),
        rounds=i.integer("rounds", di.rounds, min_value=1, max_value=20),
        epochs=i.integer("epochs", di.epochs, min_value=1),
        batch_size=i.integer("batch_size", di.batch_size, min_value=8),
        learning_rate=i.number("learning_rate", di.learning_rate, min_value=0, strict_min=True),
    )
    i.finish()
    _check_expert(imitation.expert)
    reward = top.raw("reward", {}) or {}
    if not isinstance(reward, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in reward.values()):
        raise ConfigError(f"train.reward: expected a mapping of coefficients, got {reward!r}")
    config = TrainConfig(
        scenario=top.string("scenario", dt.scenario),
        total_timesteps=top.integer("total_timesteps", dt.total_timesteps, min_value=1),
        n_envs=top.integer("n_envs", dt.n_envs, min_value=1, max_value=256),
        vec_env=top.string("vec_env", dt.vec_env, VEC_ENVS),
        seed=top.integer("seed", dt.seed, min_value=0),
        rollout_engine=top.string("rollout_engine", dt.rollout_engine, MODES),
        reward={str(k): float(v) for k, v in reward.items()},
        ppo=ppo,
        normalize_reward=top.boolean("normalize_reward", dt.normalize_reward),
        checkpoint_every_steps=top.integer("checkpoint_every_steps", dt.checkpoint_every_steps,
                                           min_value=1),
        eval=evaluation,
        imitation=imitation,
        time_budget_min=(top.number("time_budget_min", min_value=0, strict_min=True)
                         if top.has("time_budget_min") else top.raw("time_budget_min")),
        workloads=_workloads(top.raw("workloads", None)),
    )
    top.finish()
    if ppo.batch_size > ppo.n_steps * config.n_envs:
        raise ConfigError(f"train.ppo.batch_size ({ppo.batch_size}) must be at most n_steps x "
                          f"n_envs ({ppo.n_steps * config.n_envs})")
    return config


def held_out_families() -> tuple[str, ...]:
    """Workload families that training must never see (the generalization suite's)."""
    return tuple(str(family["name"]) for family in suite_families("generalization"))


def _workloads(raw: Any) -> dict[str, Any] | None:
    """The ``workloads:`` mixture: inline, a packaged name (``generalize`` reads
    ``rlscale/configs/workloads-generalize.yaml``) or a YAML path; validated."""
    if raw is None:
        return None
    if isinstance(raw, str):
        packaged = resources.files("rlscale").joinpath("configs").joinpath(f"workloads-{raw}.yaml")
        path = Path(raw)
        if packaged.is_file():
            text = packaged.read_text()
        elif path.is_file():
            text = path.read_text()
        else:
            raise ConfigError(f"train.workloads: {raw!r} is neither a packaged mixture "
                              f"(generalize) nor a YAML file")
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"train.workloads: {raw!r} is not valid YAML: {err}") from None
    try:
        parse_mixture(raw, held_out=held_out_families(), path="train.workloads")
    except WorkloadConfigError as err:
        raise ConfigError(str(err)) from None
    return dict(raw)


def _check_expert(text: str) -> None:
    """The expert must be one heuristic (a baseline, the look-ahead heuristic or the
    clairvoyant floor, see :func:`~rlscale.evaluate.policies.heuristic_knobs`) with knobs it
    has; not a bundle."""

    try:
        specs = parse_policies(text)
        if len(specs) != 1:
            raise ValueError(f"expected one heuristic, got {len(specs)}")
        unknown = sorted(set(specs[0].knobs) - set(heuristic_knobs(specs[0].name)))
        if unknown:
            raise ValueError(f"{specs[0].name!r} has no knob(s) {unknown}")
    except ValueError as err:
        raise ConfigError(f"train.imitation.expert: {text!r}: {err}") from None
