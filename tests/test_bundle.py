"""The policy bundle and its numpy runtime: same actions as stable-baselines3, safe loading."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlscale.agents.action_space import ActionSpec
from rlscale.agents.bundle.format import (
    FORMAT_VERSION,
    ActorNetwork,
    BundleError,
    BundleSpec,
    Normalization,
    weight_names,
)
from rlscale.agents.bundle.io import (
    attach_evaluation,
    bundle_checksum,
    load_bundle,
    save_bundle,
)
from rlscale.agents.numpy_policy import BundlePolicy
from rlscale.agents.policy import PolicyContext, PolicyInput
from rlscale.agents.shield import Shield
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo
from rlscale.metrics.snapshot import ClusterSnapshot, PoolStatus
from rlscale.training.sb3_export import export_sb3

POOLS = ("h100", "a100")
CONFIG = ObservationConfig((PoolInfo("h100", "H100", 1, 4, 256, 6.88, 12.0, 4),
                            PoolInfo("a100", "A100", 1, 8, 256, 3.43, 5.0, 8)), 2.0, 0.15)
SPEC = ActionSpec(POOLS, 2, 5)
SINGLE = ActionSpec.unnamed(1, 2, 5)
OBS = ObservationBuilder(CONFIG).size


# ---------------------------------------------------------------------------------- helpers
def _weights(sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        out += [rng.normal(0, 0.5, (fan_out, fan_in)), rng.normal(0, 0.1, fan_out)]
    return out


def _save(path: Path, *, weights: list[np.ndarray] | None = None,
          normalization: Normalization | str | None = "random",
          created: str | None = None) -> Path:
    rng = np.random.default_rng(1)
    if isinstance(normalization, str):
        normalization = Normalization(rng.normal(0, 1, OBS), rng.uniform(0.1, 3, OBS), 10.0,
                                      1e-8)
    network = ActorNetwork(weights if weights is not None else _weights([OBS, 16, 8, 20]),
                           "tanh", normalization)
    spec = BundleSpec(
        PolicyContext(CONFIG, (0, 1), 30.0), SPEC, np.zeros(OBS), np.full(OBS, 2.0),
        scenario_name="two-pool", scenario_yaml="cluster: {}\n",
        train_config={"seed": 3, "lr": np.float32(3e-4), "net_arch": (16, 8)},
        evaluation={"slo_attainment": 0.97, "ttft_p99_s": float("nan")}, created=created)
    return save_bundle(path, network, spec)


def _rewrite(path: Path, arrays: dict[str, np.ndarray] | None = None,
             metadata: dict[str, Any] | None = None) -> None:
    """Replace the bundle's contents and re-sign them (so checks past the checksum run)."""
    if arrays is not None:
        np.savez(path / "weights.npz", allow_pickle=False, **arrays)
    meta = metadata if metadata is not None else json.loads((path / "bundle.json").read_text())
    meta["checksum"] = bundle_checksum((path / "weights.npz").read_bytes(), meta)
    (path / "bundle.json").write_text(json.dumps(meta))


def _input(vector: np.ndarray, desired: tuple[int, ...]) -> PolicyInput:
    statuses = tuple(PoolStatus(name, d, d, 0, 0, 0, 1.0, pool.gpu_type, 1)
                     for name, d, pool in zip(POOLS, desired, CONFIG.pools, strict=True))
    snapshot = ClusterSnapshot(0.0, statuses, (), {"H100": 0, "A100": 0})
    return PolicyInput(0.0, vector.astype(np.float32), (), snapshot, desired)


def _refused(path: Path, *needles: str, **expect: Any) -> str:
    with pytest.raises(BundleError) as caught:
        load_bundle(path, **expect)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    return message


# ---------------------------------------------------------------------------------- SB3 parity
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A MaskablePPO trained for 128 steps in VecNormalize, exported and loaded."""
    torch = pytest.importorskip("torch")
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from gymnasium.wrappers import TimeLimit
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rlscale.envs import LLMClusterEnv

    torch.manual_seed(0)
    overrides = {"episode": {"duration_s": 300}}

    def make() -> TimeLimit[Any, Any]:
        return TimeLimit(LLMClusterEnv("single-pool", overrides=overrides), 10)

    vec = VecNormalize(DummyVecEnv([make]), norm_reward=False)
    vec.seed(0)
    model = sb3_contrib.MaskablePPO("MlpPolicy", vec, n_steps=64, batch_size=32, seed=0,
                                    policy_kwargs={"net_arch": [32, 32]})
    model.learn(total_timesteps=128)
    vec.training = False

    env = LLMClusterEnv("single-pool", overrides=overrides)
    raw, desired = [], []
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(100):
        assert env.cluster is not None
        raw.append(obs)
        desired.append(tuple(env.cluster.desired))
        mask = env.action_masks()[:5]
        # one pool owning every GPU of its type: the inventory never binds before max
        np.testing.assert_array_equal(
            SINGLE.replica_mask(env.cluster.desired[0], 1, 16), mask)
        action = np.array([rng.choice(np.flatnonzero(mask)), rng.integers(5)])
        obs, *_ = env.step(action)
    space = env.observation_space
    space.seed(7)
    raw += [space.sample() for _ in range(100)]
    desired += [(int(rng.integers(0, 20)),) for _ in range(100)]
    collected = np.array(raw[:100])
    spec = BundleSpec(
        env.policy_context(), env.codec.spec, collected.min(axis=0), collected.max(axis=0),
        env.observation_names, env.observation_units, "single-pool", "name: single-pool\n",
        {"total_timesteps": 128, "net_arch": [32, 32]}, {})
    path = export_sb3(model, vec, tmp_path_factory.mktemp("bundle") / "ppo", spec)
    policy = BundlePolicy.load(path, expect_pools=[p.name for p in env.observation_config.pools],
                               expect_observation_size=env.builder.size)
    return {"model": model, "vec": vec, "env": env, "path": path, "policy": policy,
            "obs": np.array(raw, dtype=np.float32), "desired": desired, "torch": torch}


@pytest.mark.slow  # the module fixture trains PPO briefly
def test_numpy_runtime_matches_maskable_ppo(trained: dict[str, Any]) -> None:
    model, vec, policy = trained["model"], trained["vec"], trained["policy"]
    torch = trained["torch"]
    obs, desired = trained["obs"], trained["desired"]
    assert len(obs) == 200
    stats = vec.obs_rms
    assert np.any(stats.mean != 0), "normalization is trivial"
    assert np.any(stats.var != 1), "normalization is trivial"

    normalized = vec.normalize_obs(obs)
    np.testing.assert_array_equal(policy.normalize(obs), normalized)
    with torch.no_grad():
        features = model.policy.pi_features_extractor(torch.as_tensor(normalized))
        latent = model.policy.mlp_extractor.forward_actor(features)
        torch_logits = model.policy.action_net(latent).numpy()
    np.testing.assert_allclose(policy.logits(obs), torch_logits, rtol=0, atol=1e-5)

    masks = np.stack([policy.masks(d) for d in desired])
    assert not masks.all(), "no observation exercises the masks"
    expected, _ = model.predict(normalized, deterministic=True, action_masks=masks)
    ours = np.stack([policy.action(o, d) for o, d in zip(obs, desired, strict=True)])
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.slow  # the module fixture trains PPO briefly
def test_bundle_records_training_setup(trained: dict[str, Any]) -> None:
    bundle, env = trained["policy"].bundle, trained["env"]
    assert bundle.layer_sizes == (env.builder.size, 32, 32, 10)
    assert bundle.activation == "tanh"
    assert bundle.observation_config == env.observation_config
    assert bundle.observation_names == env.observation_names
    assert bundle.min_replicas == env.policy_context().min_replicas
    assert {"torch", "stable-baselines3", "sb3-contrib", "numpy"} <= set(bundle.library_versions)
    assert bundle.normalization is not None
    np.testing.assert_array_equal(bundle.normalization.mean, trained["vec"].obs_rms.mean)
    low, high = trained["policy"].observation_range
    assert np.all(low <= high)
    assert low.dtype == np.float32


@pytest.mark.slow  # the module fixture trains PPO briefly
def test_decide_through_the_shield(trained: dict[str, Any]) -> None:
    policy, env = trained["policy"], trained["env"]
    observed = env.policy_input()
    decision = policy.decide(observed)
    action = policy.action(observed.vector, observed.desired)
    assert decision.valid
    assert decision.reason == "Policy"
    assert decision.replicas == (observed.desired[0] + int(action[0]) - 2,)
    assert decision.weights == ((1.0,) if action[1] == 0 else (action[1] / 4,))
    shield = Shield(policy.context, observation_range=policy.observation_range)
    assert shield.decide(policy, observed).decision.valid


def test_ppo_relu_and_separate_net_arch_export(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlscale.envs import LLMClusterEnv

    env = LLMClusterEnv("single-pool", overrides={"episode": {"duration_s": 300}})
    model = PPO("MlpPolicy", DummyVecEnv([lambda: env]), seed=1, policy_kwargs={
        "net_arch": {"pi": [24], "vf": [8]}, "activation_fn": torch.nn.ReLU})
    space = env.observation_space
    spec = BundleSpec(
        PolicyContext(env.observation_config, (1,), 30.0), env.codec.spec, env.builder.low,
        env.builder.high, env.observation_names, env.observation_units, "single-pool", "", {})
    path = export_sb3(model, None, tmp_path / "ppo", spec)
    policy = BundlePolicy.load(path)
    assert policy.bundle.activation == "relu"
    assert policy.bundle.normalization is None
    space.seed(3)
    obs = np.array([space.sample() for _ in range(50)])
    expected, _ = model.predict(obs, deterministic=True)
    ours = np.stack([policy.action(o, (8,)) for o in obs])  # 8 of 1..16: nothing masked
    np.testing.assert_array_equal(ours, expected)


# ---------------------------------------------------------------------------------- round trip
def test_round_trip(tmp_path: Path) -> None:
    weights = _weights([OBS, 16, 8, sum(SPEC.nvec)])
    path = _save(tmp_path / "b")
    assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "weights.npz"]
    bundle = load_bundle(path, expect_pools=POOLS, expect_observation_size=OBS)
    arrays = bundle.arrays()
    assert list(arrays) == weight_names([OBS, 16, 8, 20])
    for name, array in zip(arrays, weights, strict=True):
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], np.float32(array))
    assert bundle.format_version == FORMAT_VERSION
    assert bundle.observation_config == CONFIG
    assert bundle.action == SPEC
    assert bundle.min_replicas == (0, 1)
    assert bundle.interval_s == 30.0
    assert bundle.observation_names == ObservationBuilder(CONFIG).names
    assert bundle.scenario_name == "two-pool"
    assert bundle.scenario_yaml == "cluster: {}\n"
    assert bundle.train_config == {"seed": 3, "lr": float(np.float32(3e-4)), "net_arch": [16, 8]}
    assert bundle.evaluation == {"slo_attainment": 0.97, "ttft_p99_s": None}
    assert bundle.layer_sizes == (OBS, 16, 8, 20)
    assert bundle.checksum == bundle_checksum((path / "weights.npz").read_bytes(),
                                              bundle.metadata)
    meta = json.loads((path / "bundle.json").read_text())
    assert meta["action"]["nvec"] == [5, 5, 5, 5]
    assert meta["network"]["activation"] == "tanh"
    assert set(meta["observation_config"]["pools"][0]) == set(PoolInfo.__dataclass_fields__)
    assert set(meta["normalization"]) >= {"mean", "var", "clip_obs", "epsilon"}
    again = load_bundle(_save(tmp_path / "c", created=bundle.created))
    assert again.checksum == bundle.checksum  # same content, same checksum


def test_masks_and_decoding(tmp_path: Path) -> None:
    """A network whose logits are its biases: h100 prefers +2, then +1, then keep, and level 4;
    a100 prefers +1, then +2, and level 0."""
    sizes = [OBS, sum(SPEC.nvec)]
    bias = np.zeros(20)
    bias[[4, 3, 2, 5 + 3, 5 + 4, 10 + 4, 15 + 0]] = [9, 8, 5, 9, 8, 9, 9]
    path = _save(tmp_path / "b", weights=[np.zeros((20, OBS)), bias], normalization=None)
    policy = BundlePolicy.load(path)
    assert policy.bundle.layer_sizes == tuple(sizes)
    decision = policy.decide(_input(np.zeros(OBS), (1, 2)))
    assert decision.replicas == (3, 3)
    assert decision.weights == (1.0, 0.0)
    assert decision.reason == "Policy"
    assert "h100 1->3 (+2)" in decision.message
    # h100 at max 4: +2 and +1 masked -> keep; a100 at 7 of 8: +1 allowed
    assert policy.decide(_input(np.zeros(OBS), (4, 7))).replicas == (4, 8)
    np.testing.assert_array_equal(policy.masks((0, 1))[:10],
                                  [0, 0, 1, 1, 1, 0, 0, 1, 1, 1])
    bias[10:] = 0  # every level 0 -> equal weights
    bias[10] = bias[15] = 1
    policy = BundlePolicy.load(_save(tmp_path / "c", weights=[np.zeros((20, OBS)), bias]))
    assert policy.decide(_input(np.zeros(OBS), (1, 2))).weights == (1.0, 1.0)
    bad = policy.decide(_input(np.full(OBS, np.nan), (1, 2)))
    assert not bad.valid
    assert bad.reason == "BadInput"
    assert not policy.decide(_input(np.zeros(OBS - 1), (1, 2))).valid


# ---------------------------------------------------------------------------------- refusals
def test_missing_parts_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "nowhere", "does not exist")
    path = _save(tmp_path / "b")
    (path / "bundle.json").unlink()
    _refused(path, "missing bundle.json")
    path = _save(tmp_path / "c")
    (path / "weights.npz").unlink()
    _refused(path, "missing weights.npz")


def test_truncated_weights_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    data = (path / "weights.npz").read_bytes()
    (path / "weights.npz").write_bytes(data[: len(data) // 2])
    _refused(path, "weights.npz is truncated or corrupt", "numpy cannot read it")


def test_flipped_byte_refused_by_checksum(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    data = bytearray((path / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / "weights.npz").write_bytes(bytes(data))
    _refused(path, "checksum")  # zip's CRC notices first: "corrupt; the checksum … either"
    path = _save(tmp_path / "d")
    data = bytearray((path / "weights.npz").read_bytes())
    data[10] ^= 0x01  # the first member's modification time: zipfile never checks it
    (path / "weights.npz").write_bytes(bytes(data))
    _refused(path, "checksum mismatch")
    path = _save(tmp_path / "c")
    text = (path / "bundle.json").read_text()
    (path / "bundle.json").write_text(text.replace('"interval_s": 30.0', '"interval_s": 31.0'))
    _refused(path, "checksum mismatch", "changed or damaged after export")


def test_bad_json_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    (path / "bundle.json").write_text('{"format_version": 1,')
    _refused(path, "bundle.json is not valid JSON", "line 1")
    (path / "bundle.json").write_text("[1, 2]")
    _refused(path, "must hold a JSON object")


def test_unsupported_version_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    meta = json.loads((path / "bundle.json").read_text())
    meta["format_version"] = 99
    _rewrite(path, metadata=meta)
    _refused(path, "format_version 99 is not supported", "reads format_version 1")


def test_wrong_pools_and_observation_size_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    _refused(path, "['h100', 'a100']", "['h100', 'l4']", expect_pools=["h100", "l4"])
    _refused(path, f"has {OBS} entries", "but 26 are expected", expect_observation_size=26)


def test_nan_weight_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    arrays = load_bundle(path).arrays()
    arrays["hidden_1_weight"] = arrays["hidden_1_weight"].copy()
    arrays["hidden_1_weight"][2, 3] = np.nan
    _rewrite(path, arrays=arrays)
    _refused(path, "hidden_1_weight has 1 NaN or infinite value(s)", "[2, 3]")
    with pytest.raises(BundleError, match="refusing to save"):
        _save(tmp_path / "c", weights=[np.full((20, OBS), np.inf), np.zeros(20)])


def test_wrong_layer_shape_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    arrays = load_bundle(path).arrays()
    arrays["hidden_1_weight"] = np.zeros((8, 15), np.float32)
    _rewrite(path, arrays=arrays)
    _refused(path, "hidden_1_weight has shape (8, 15)", "needs (8, 16)")
    arrays.pop("action_bias")
    _rewrite(path, arrays=arrays)
    _refused(path, "missing ['action_bias']")
    meta = json.loads((path / "bundle.json").read_text())
    meta["network"]["layer_sizes"] = [OBS, 16, 8, 21]
    _rewrite(path, arrays=load_bundle(_save(tmp_path / "c")).arrays(), metadata=meta)
    _refused(path, "ends with 21 logits", "needs 20")


def test_other_inconsistencies_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    original = json.loads((path / "bundle.json").read_text())
    cases: list[tuple[str, Any, str]] = [
        ("network.activation", "gelu", "'gelu' is not supported"),
        ("action.nvec", [5, 5, 5], "does not fit 2 pools"),
        ("observation.names", ["x"] * OBS, "the bundle was trained on another observation"),
        ("min_replicas", [0, 9], "max_replicas=8"),
        ("normalization.var", [-1.0] * OBS, "var >= 0"),
        ("observation_config.slo_itl_s", -1, "not a valid ObservationConfig"),
        # malformed fields: the message names the field's path
        ("observation.size", 0, "bundle.json: observation.size: expected an integer in [1,"),
        ("observation.names", ["x"], f"observation.names: expected a list of {OBS} values"),
        ("observation.seen_low", ["x"] * OBS, "observation.seen_low: expected finite numbers"),
        ("action.replica_step", True, "action.replica_step: expected an integer"),
        ("action.pools", ["h100", "h100"], "pools must be unique names"),
        ("interval_s", None, "interval_s: required field is missing"),
        ("scenario", [], "scenario: expected a mapping"),
        ("min_replicas", [0, "1"], "min_replicas: expected integers only"),
    ]
    for key, value, needle in cases:
        meta = json.loads(json.dumps(original))
        section, _, leaf = key.rpartition(".")
        (meta[section] if section else meta)[leaf] = value
        _rewrite(path, metadata=meta)
        _refused(path, needle)


def test_attach_evaluation_changes_only_the_evaluation(tmp_path: Path) -> None:
    path = _save(tmp_path / "b")
    before = load_bundle(path)
    files = {name: (path / name).read_bytes() for name in ("bundle.json", "weights.npz")}
    after = load_bundle(attach_evaluation(path, {"slo_attainment": 0.5}))
    assert after.evaluation == {"slo_attainment": 0.5}
    assert after.checksum != before.checksum
    assert {k: v for k, v in after.metadata.items() if k not in ("evaluation", "checksum")} == {
        k: v for k, v in before.metadata.items() if k not in ("evaluation", "checksum")}
    attach_evaluation(path, before.evaluation)  # back: the same bytes as first written
    assert {name: (path / name).read_bytes() for name in files} == files


def test_random_damage_only_raises_bundle_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = _save(tmp_path / "b")
    pristine = {name: (path / name).read_bytes() for name in ("bundle.json", "weights.npz")}
    for trial in range(60):
        name = ("bundle.json", "weights.npz")[trial % 2]
        data = bytearray(pristine[name])
        for at in rng.integers(0, len(data), int(rng.integers(1, 4))):
            data[at] ^= int(rng.integers(1, 256))
        (path / name).write_bytes(bytes(data))
        with pytest.raises(BundleError):
            load_bundle(path)
        (path / name).write_bytes(pristine[name])


def test_runtime_imports_no_torch() -> None:
    code = ("import sys, rlscale.agents.numpy_policy, rlscale.agents.bundle.io; "
            "assert 'torch' not in sys.modules and 'stable_baselines3' not in sys.modules "
            "and 'rlscale.sim' not in sys.modules and 'rlscale.envs' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'stable', 'rlscale.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
