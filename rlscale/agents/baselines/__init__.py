"""Heuristic baselines, each faithful to the autoscaler it is named after.

========================  ===============================================  ==============
name                      follows                                          tuned knob
========================  ===============================================  ==============
``static``                fixed provisioning                               ``replicas``
``hpa``                   Kubernetes HPA v2 on KV-cache usage per pod      ``target``
``hpa-running``           Kubernetes HPA v2 on running requests per pod    ``target``
``kpa``                   Knative Pod Autoscaler (concurrency, panic)      ``target``
``keda``                  KEDA Prometheus trigger on waiting requests      ``threshold``
``planner``               NVIDIA Dynamo-style SLA planner                  ``headroom``
========================  ===============================================  ==============

Build one with :func:`make_baseline`; every class has ``TUNABLE`` (its main knob) and
``TUNE_GRID`` (candidate values). See ``README.md`` in this package for knobs, sources and
departures from the originals.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rlscale.agents.baselines._common import Baseline
from rlscale.agents.baselines.hpa import HorizontalPodAutoscaler, HpaRunning
from rlscale.agents.baselines.keda import KedaScaler
from rlscale.agents.baselines.kpa import KnativePodAutoscaler
from rlscale.agents.baselines.planner import SloPlanner
from rlscale.agents.baselines.static import StaticPolicy
from rlscale.agents.policy import Policy, PolicyContext

BASELINES: dict[str, type[Baseline]] = {
    "static": StaticPolicy,
    "hpa": HorizontalPodAutoscaler,
    "hpa-running": HpaRunning,
    "kpa": KnativePodAutoscaler,
    "keda": KedaScaler,
    "planner": SloPlanner,
}
"""Baseline classes by registry name."""


def knobs_of(name: str) -> tuple[str, ...]:
    """The keyword knobs baseline ``name`` accepts (ValueError for an unknown name)."""
    factory = BASELINES.get(name)
    if factory is None:
        raise ValueError(f"unknown baseline {name!r}; valid: {sorted(BASELINES)}")
    return keyword_knobs(factory)


def keyword_knobs(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword-only parameters of a policy class or factory: its knobs."""
    parameters = inspect.signature(factory).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def make_baseline(name: str, context: PolicyContext, **knobs: Any) -> Policy:
    """Baseline ``name`` for ``context`` with ``knobs`` (each class documents its own).

    Raises:
        ValueError: unknown name or knob (the message lists the valid ones), or a bad value.
    """
    valid = knobs_of(name)
    unknown = sorted(set(knobs) - set(valid))
    if unknown:
        raise ValueError(f"baseline {name!r}: unknown knob(s) {unknown}; valid: {list(valid)}")
    return BASELINES[name](context, **knobs)


__all__ = [
    "BASELINES",
    "Baseline",
    "HorizontalPodAutoscaler",
    "HpaRunning",
    "KedaScaler",
    "KnativePodAutoscaler",
    "SloPlanner",
    "StaticPolicy",
    "knobs_of",
    "make_baseline",
]
