"""rlscale: a reinforcement-learning autoscaler and request router for vLLM on Kubernetes.

Subpackages point one way: ``sim`` (the cluster simulator, no gymnasium, no torch) <- ``envs``
(the Gymnasium environment) <- ``agents`` (policies, training); ``controller`` runs in the
cluster and imports neither ``sim``, torch nor stable-baselines3.
"""

__version__ = "0.1.0"
