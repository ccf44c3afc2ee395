"""Training: PPO with an imitation warm start, validation against tuned baselines, and the
export of a trained model as a torch-free policy bundle (:mod:`rlscale.agents.bundle`).

``python -m rlscale.train`` (``rlscale train``) runs :func:`rlscale.training.ppo.train`.
Everything here may use torch and stable-baselines3; nothing in the cluster imports it.
"""
