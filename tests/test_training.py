"""Training: config validation, and a short run that checkpoints, resumes and exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlscale.configschema import ConfigError
from rlscale.training.config import load_train_config

pytest.importorskip("sb3_contrib", reason="the train extra is not installed")

TINY = ["total_timesteps=256", "n_envs=1", "ppo.n_steps=128", "ppo.batch_size=64",
        "ppo.n_epochs=2", "ppo.net_arch=[16, 16]", "checkpoint_every_steps=128",
        "scenario=single-pool", "imitation.steps=64", "imitation.rounds=2",
        "imitation.epochs=2"]


def test_the_packaged_config_loads_and_overrides_apply() -> None:
    config = load_train_config(None, ["ppo.learning_rate=3e-4", "reward.cost=0.8"])
    assert config.scenario == "hetero-3pool"
    assert config.ppo.learning_rate == 3e-4
    assert config.imitation.expert == "planner:headroom=0.2"
    assert config.reward == {"cost": 0.8}
    assert config.as_dict()["ppo"]["net_arch"] == [128, 128]


@pytest.mark.parametrize(("override", "message"), [
    ("ppo.batch_size=4", "train.ppo.batch_size: expected an integer in [8, inf], got 4"),
    ("ppo.activation=sigmoid", "train.ppo.activation: expected one of ['tanh', 'relu']"),
    ("ppo.lr=0.1", "train.ppo: unknown field(s) ['lr']"),
    ("eval.seeds=[]", "train.eval.seeds: expected a non-empty list of integers"),
    ("ppo.batch_size=4096", "must be at most n_steps x n_envs"),
    ("nonsense", "--set: expected KEY=VALUE"),
])
def test_a_wrong_field_is_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_train_config(None, [override])
    assert message in str(caught.value)


@pytest.mark.slow
def test_a_short_run_checkpoints_resumes_and_exports_a_loadable_bundle(tmp_path: Path) -> None:
    from rlscale.agents.numpy_policy import BundlePolicy
    from rlscale.envs import LLMClusterEnv
    from rlscale.training.ppo import latest_checkpoint, train

    out = tmp_path / "run"
    first = train(load_train_config(None, TINY), out, progress=False, validate=False,
                  final_evaluation=False)
    assert first["steps"] == 256
    found = latest_checkpoint(out / "checkpoints")
    assert found is not None
    assert found[2] == 256
    assert (out / "config.yaml").exists()
    assert (out / "checkpoints" / "rl_model_0_steps.zip").exists()  # after the warm start
    assert len(json.loads((out / "imitation.json").read_text())["rounds"]) == 2
    assert (out / "versions.json").exists()
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))

    resumed = train(load_train_config(None, [*TINY, "total_timesteps=512"]), out,
                    resume=True, progress=False, validate=False, final_evaluation=False)
    assert resumed["steps"] == 512
    again = latest_checkpoint(out / "checkpoints")
    assert again is not None
    assert again[2] == 512

    policy = BundlePolicy.load(out / "bundle", expect_pools=["llama3-8b-a100"])
    env = LLMClusterEnv("single-pool")
    observation, _ = env.reset(seed=0)
    decision = policy.decide(env.policy_input(observation))
    assert decision.valid
    assert 1 <= decision.replicas[0] <= 16
    assert (out / "learning_curve.png").stat().st_size > 0
