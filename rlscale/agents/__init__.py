"""Policies: the ``Policy`` protocol, heuristic baselines, the oracle, and (later) PPO.

Every policy answers ``decide(PolicyInput) -> Decision``: desired replicas per pool and routing
weights, with a ``valid`` flag and a reason. The same code runs in the simulator (through the
environment and the evaluation) and in the cluster (through the controller).
"""

from rlscale.agents.policy import Decision, Policy, PolicyContext, PolicyInput

__all__ = ["Decision", "Policy", "PolicyContext", "PolicyInput"]
