"""A warm start for PPO: behaviour cloning, then DAgger, from a heuristic expert.

PPO from a random policy spends most of a short budget rediscovering what a capacity planner
already knows (scale with the load, route to ready capacity). Here the network first learns to
act like a heuristic expert, then PPO improves on it with the environment's reward:

1. **Behaviour cloning** (round 0): the expert drives the training environments; every state
   is stored with the expert's decision, encoded in the PPO action space
   (:func:`expert_action`: replica changes clipped to ``±replica_step``, weights rounded to
   the weight levels, both kept inside the action mask).
2. **DAgger** (rounds 1, 2, …; Ross et al., AISTATS 2011): the learner acts (the expert with
   probability ``0.5**round``) and the expert labels the states the learner reaches, so the
   network also learns to recover from its own mistakes.
3. After each round the actor is fit by cross-entropy on all labels so far and the critic on
   the discounted (normalized) returns of the complete episodes collected, so PPO starts with
   a value function that matches the policy it improves.

The observation normalization (``VecNormalize``) is updated by the collection itself, so the
statistics PPO continues with are the ones the network was fit on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.agents.action_space import ActionSpec
from rlscale.agents.policy import Decision, Policy
from rlscale.evaluate.policies import episode_policy, parse_policies
from rlscale.progress import ProgressBar
from rlscale.training.config import ImitationConfig


def expert_action(decision: Decision, desired: Sequence[int], mask: NDArray[np.bool_],
                  replica_step: int, weight_levels: int) -> NDArray[np.int64]:
    """The ``MultiDiscrete`` action closest to ``decision`` that ``mask`` allows
    (:meth:`~rlscale.agents.action_space.ActionSpec.nearest`).

    Args:
        decision: the expert's replicas and weights per pool.
        desired: the pools' desired replicas now.
        mask: the flat action mask (``2k+1`` replica choices per pool, then ``L`` levels).
        replica_step: ``k``; weight_levels: ``L``.
    """
    spec = ActionSpec.unnamed(len(desired), replica_step, weight_levels)
    return spec.nearest(decision.replicas, decision.weights, desired, mask)


@dataclass
class Demonstrations:
    """Labelled states (raw observations), with masks and returns for the critic.

    ``returns`` are discounted sums of normalized rewards to the end of the episode;
    ``complete`` is False for states of an episode the collection cut short (their return is
    unknown, so the critic is not fit on them).
    """

    observations: NDArray[np.float32]
    actions: NDArray[np.int64]
    masks: NDArray[np.bool_]
    returns: NDArray[np.float32]
    complete: NDArray[np.bool_]
    expert_share: float
    episodes: int

    def __add__(self, other: Demonstrations) -> Demonstrations:
        n, m = len(self.actions), len(other.actions)
        return Demonstrations(
            np.concatenate([self.observations, other.observations]),
            np.concatenate([self.actions, other.actions]),
            np.concatenate([self.masks, other.masks]),
            np.concatenate([self.returns, other.returns]),
            np.concatenate([self.complete, other.complete]),
            (self.expert_share * n + other.expert_share * m) / max(n + m, 1),
            self.episodes + other.episodes)


def discounted_returns(rewards: NDArray[np.float64], dones: NDArray[np.bool_], gamma: float
                       ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Per-step returns of one environment's reward sequence, restarting after each done;
    and whether the step's episode ended inside the sequence."""
    returns = np.zeros(len(rewards), dtype=np.float32)
    complete = np.zeros(len(rewards), dtype=np.bool_)
    running, ended = 0.0, False
    for t in range(len(rewards) - 1, -1, -1):
        if dones[t]:
            running, ended = 0.0, True
        running = float(rewards[t]) + gamma * running
        returns[t], complete[t] = running, ended
    return returns, complete


def collect(vec_env: Any, experts: Callable[[int], Policy], steps: int, *, gamma: float,
            replica_step: int, weight_levels: int, learner: Any = None, beta: float = 1.0,
            rng: np.random.Generator, advance: Callable[[], None] = lambda: None
            ) -> Demonstrations:
    """Run ``steps`` environment steps (over all environments of ``vec_env``, a
    ``VecNormalize`` over environments with ``policy_input`` and ``action_masks``) labelled
    by an expert per environment, made afresh by ``experts(i)`` for every episode of
    environment ``i``. With a ``learner`` (an SB3 model), each environment follows the
    learner, or the expert with probability ``beta``."""
    n_envs = vec_env.num_envs
    rounds = max(1, math.ceil(steps / n_envs))
    raw = _reset(vec_env)
    expert_of = [experts(i) for i in range(n_envs)]
    obs, acts, masks, rewards, dones = [], [], [], [], []
    followed_expert = 0
    episodes = 0
    for _ in range(rounds):
        inputs = vec_env.env_method("policy_input")
        mask = np.stack(vec_env.env_method("action_masks"))
        labels = np.stack([
            expert_action(expert.decide(observed), observed.desired, mask[i], replica_step,
                          weight_levels)
            for i, (expert, observed) in enumerate(zip(expert_of, inputs, strict=True))])
        actions = labels
        if learner is not None and beta < 1.0:
            own, _ = learner.predict(vec_env.normalize_obs(raw), action_masks=mask,
                                     deterministic=True)
            use_expert = rng.random(n_envs) < beta
            actions = np.where(use_expert[:, None], labels, own)
            followed_expert += int(use_expert.sum())
        else:
            followed_expert += n_envs
        obs.append(raw.copy())
        acts.append(labels)
        masks.append(mask)
        _, reward, done, _ = vec_env.step(actions)
        raw = np.asarray(vec_env.get_original_obs())
        rewards.append(np.asarray(reward, dtype=np.float64))
        dones.append(np.asarray(done, dtype=np.bool_))
        for i in np.flatnonzero(done):  # the environment has started its next episode
            expert_of[i] = experts(int(i))
            episodes += 1
        for _ in range(n_envs):
            advance()
    reward_matrix, done_matrix = np.stack(rewards), np.stack(dones)
    per_env = [discounted_returns(reward_matrix[:, i], done_matrix[:, i], gamma)
               for i in range(n_envs)]
    returns = np.stack([r for r, _ in per_env], axis=1)
    complete = np.stack([c for _, c in per_env], axis=1)
    return Demonstrations(
        np.concatenate(obs).astype(np.float32), np.concatenate(acts), np.concatenate(masks),
        returns.reshape(-1), complete.reshape(-1),
        followed_expert / (rounds * n_envs), episodes)


def _reset(vec_env: Any) -> NDArray[np.float32]:
    vec_env.reset()
    return np.asarray(vec_env.get_original_obs(), dtype=np.float32)


def fit(model: Any, vec_env: Any, data: Demonstrations, *, epochs: int, batch_size: int,
        learning_rate: float, rng: np.random.Generator) -> dict[str, float]:
    """Fit the actor (cross-entropy on the labels) and the critic (MSE on the returns of
    complete episodes) of an SB3 ``MaskablePPO`` model; returns the final figures."""
    import torch

    policy = model.policy
    policy.set_training_mode(True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    obs = torch.as_tensor(vec_env.normalize_obs(data.observations), dtype=torch.float32)
    actions = torch.as_tensor(data.actions)
    masks = data.masks
    returns = torch.as_tensor(data.returns)
    complete = torch.as_tensor(data.complete, dtype=torch.float32)
    n = len(data.actions)
    actor_loss = critic_loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            values, log_prob, _ = policy.evaluate_actions(obs[batch], actions[batch],
                                                          action_masks=masks[batch])
            weight = complete[batch]
            value_error = ((values.flatten() - returns[batch]) ** 2 * weight).sum() / (
                weight.sum().clamp(min=1.0))
            loss = -log_prob.mean() + 0.5 * value_error
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            optimizer.step()
            actor_loss, critic_loss = -log_prob.mean().item(), value_error.item()
    policy.set_training_mode(False)
    with torch.no_grad():
        chosen = policy.get_distribution(obs, action_masks=masks).get_actions(
            deterministic=True).numpy()
    agree = chosen == data.actions
    return {"samples": n, "actor_nll": actor_loss, "critic_mse": critic_loss,
            "sub_action_accuracy": float(agree.mean()),
            "replica_accuracy": float(agree[:, :agree.shape[1] // 2].mean()),
            "joint_accuracy": float(agree.all(axis=1).mean())}


def imitate(model: Any, vec_env: Any, config: ImitationConfig, *, gamma: float,
            replica_step: int, weight_levels: int, seed: int, out: Path,
            progress: bool = True) -> dict[str, Any]:
    """Run ``config.rounds`` rounds of collection and fitting; writes ``out/imitation.json``.

    Args:
        model: a fresh SB3 ``MaskablePPO``; vec_env: its ``VecNormalize`` environments.
        gamma: the discount of the critic's returns (PPO's).
        replica_step / weight_levels: the action layout of the environments.
    """

    spec = parse_policies(config.expert)[0]

    def experts(i: int) -> Policy:
        """The expert for environment ``i``'s current episode (its own capacities; a
        clairvoyant expert also gets the episode's arrivals)."""
        episode = vec_env.env_method("expert_episode", indices=[i])[0]
        return episode_policy(spec, episode.context, episode.scenario, episode.workload,
                              episode.offset_s)

    rng = np.random.default_rng(seed)
    data: Demonstrations | None = None
    report: dict[str, Any] = {"expert": spec.label, "rounds": []}
    per_round = max(vec_env.num_envs, config.steps)
    with ProgressBar(progress, f"imitating {spec.label}", per_round * config.rounds) as advance:
        for round_index in range(config.rounds):
            beta = 0.5 ** round_index
            new = collect(vec_env, experts, per_round, gamma=gamma, replica_step=replica_step,
                          weight_levels=weight_levels,
                          learner=model if round_index > 0 else None, beta=beta, rng=rng,
                          advance=advance)
            data = new if data is None else data + new
            figures = fit(model, vec_env, data, epochs=config.epochs,
                          batch_size=config.batch_size, learning_rate=config.learning_rate,
                          rng=rng)
            report["rounds"].append({"round": round_index, "beta": beta,
                                     "expert_share": new.expert_share,
                                     "episodes": new.episodes, **figures})
    out.mkdir(parents=True, exist_ok=True)
    (out / "imitation.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
