"""The one action layout: encoding, decoding and masks, and every user of it agreeing."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.agents.action_space import ActionSpec, gpu_limit, level_weights
from rlscale.agents.policy import Decision
from rlscale.envs.cluster_env import LLMClusterEnv
from rlscale.training.imitation import expert_action

SPEC = ActionSpec(("h100", "a100", "l4"), 2, 5)


def test_nvec_and_round_trip() -> None:
    assert SPEC.nvec == (5, 5, 5, 5, 5, 5)
    action = SPEC.encode([2, 0, -1], [4, 0, 1])
    assert action.tolist() == [4, 2, 1, 4, 0, 1]
    assert SPEC.deltas(action) == [2, 0, -1]
    assert SPEC.levels(action) == [4, 0, 1]
    assert SPEC.wanted_replicas(action, (1, 3, 0)) == [3, 3, -1]  # clamping is the caller's


def test_weights_are_level_fractions_and_all_zero_means_all_one() -> None:
    assert SPEC.weights([4, 2, 1]) == ((1.0, 0.5, 0.25), False)
    assert SPEC.weights([0, 0, 0]) == ((1.0, 1.0, 1.0), True)
    assert level_weights([0.0, 0.3]) == ((0.0, 0.3), False)


def test_out_of_range_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="outside MultiDiscrete"):
        SPEC.check([5, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="outside MultiDiscrete"):
        SPEC.check([0, 0, 0])


@pytest.mark.parametrize(("pools", "step", "levels"), [((), 2, 5), (("a", "a"), 2, 5),
                                                        (("a",), -1, 5), (("a",), 2, 1)])
def test_bad_layouts_are_refused(pools: tuple[str, ...], step: int, levels: int) -> None:
    with pytest.raises(ValueError, match="action:"):
        ActionSpec(pools, step, levels)


def test_masks_keep_targets_in_range_but_always_allow_keep_and_shrinking_from_above() -> None:
    np.testing.assert_array_equal(SPEC.replica_mask(0, 1, 4), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(SPEC.replica_mask(4, 1, 4), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(SPEC.replica_mask(6, 1, 4), [1, 1, 1, 0, 0])  # above upper
    flat = SPEC.masks((0, 4, 2), (1, 1, 0), (4, 4, 3))
    assert flat.shape == (sum(SPEC.nvec),)
    assert flat[15:].all()  # every weight level


def test_gpu_limit_counts_the_other_pools_of_the_same_type() -> None:
    # pools 0 and 2 share GPU type "x": 8 GPUs, pool 2 wants 3 replicas of 2 GPUs
    assert gpu_limit(0, (1, 5, 3), (1, 1, 2), ("x", "y", "x"), {"x": 8, "y": 1}) == 2
    assert gpu_limit(1, (1, 5, 3), (1, 1, 2), ("x", "y", "x"), {"x": 8, "y": 1}) == 1


def test_expert_labels_decode_back_to_the_expert_decision() -> None:
    free = np.ones(sum(SPEC.nvec), dtype=np.bool_)
    action = expert_action(Decision((4, 2, 0), (1.0, 0.5, 0.0)), (3, 2, 1), free, 2, 5)
    assert SPEC.wanted_replicas(action, (3, 2, 1)) == [4, 2, 0]
    assert SPEC.weights(SPEC.levels(action)) == ((1.0, 0.5, 0.0), False)


def test_env_codec_uses_the_layout() -> None:
    env = LLMClusterEnv("hetero-3pool")
    env.reset(seed=0)
    assert env.cluster is not None
    codec = env.codec
    assert tuple(env.action_space.nvec) == codec.spec.nvec
    desired = list(env.cluster.desired)
    plenty = dict.fromkeys(env.cluster.gpu_total, 10000)
    np.testing.assert_array_equal(
        codec.masks(desired, plenty),
        codec.spec.masks(desired, codec.min_replicas, codec.max_replicas))
    decoded = codec.decode(codec.encode([0] * codec.count, [0] * codec.count), desired, plenty)
    assert decoded.replicas == tuple(desired)
    assert decoded.weights == (1.0,) * codec.count
    assert decoded.all_weights_zero
