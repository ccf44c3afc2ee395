"""rlscale: a reinforcement-learning autoscaler and request router for vLLM on Kubernetes.

Subpackages point one way (ARCHITECTURE.md's layer table, enforced by tests/test_layers.py):
``sim`` (the simulator) and ``agents`` (what runs in the cluster: policies, bundle runtime,
shield) stand on ``metrics``; ``envs``, ``evaluate`` and ``training`` stand on them; the
``controller`` imports neither ``sim``, torch nor stable-baselines3.
"""

__version__ = "0.1.0"
