"""One vocabulary of reasons: why a decision is what it is, or why something intervened.

A reason is a short CamelCase word, as in Kubernetes' conditions and Events
(``ScalingLimited``, ``TooManyReplicas``). The same word reaches the environment's ``info``, the
evaluation's reports, and the controller's logs, metric labels (``rlscale_decisions_total``,
``rlscale_fallbacks_total``, ``rlscale_shield_interventions_total``) and Kubernetes Events.
The shield's per-pool interventions are written ``Reason:pool`` (``ScaleUpLimit:llama3-8b-l4``).
Heuristic policies keep their upstream reasons (the HPA's ``ScaleUpStabilized``, Knative's
panic mode, ...): those live with each baseline.

Every constant here is a plain ``str`` (comparable, serializable, usable as a label value).
"""

from __future__ import annotations

from typing import Final, Literal

# --- the policy itself ------------------------------------------------------------------
POLICY: Final = "Policy"
"""A learned policy decided."""
BAD_INPUT: Final = "BadInput"
"""The policy was given an observation or replica counts that do not fit it (invalid)."""
POLICY_ERROR: Final = "PolicyError"
"""The policy raised an exception (the decision is invalid; the fallback decides)."""

# --- the shield: the fallback decides ---------------------------------------------------
FALLBACK_NAN: Final = "FallbackNaN"
"""The observation had NaN or infinite entries."""
FALLBACK_OUT_OF_RANGE: Final = "FallbackOutOfRange"
"""The observation lay outside the range seen in training (with the shield's margin)."""
FALLBACK_UNFAMILIAR: Final = "FallbackUnfamiliar"
"""The observations have been unlike training's for a while (rlscale.agents.familiarity)."""
FALLBACK_INVALID: Final = "FallbackInvalid"
"""The policy returned an invalid decision."""
KEEP_CURRENT: Final = "KeepCurrent"
"""No usable fallback: the current replicas and weights are kept."""

# --- the shield: clamps -----------------------------------------------------------------
TOO_MANY_REPLICAS: Final = "TooManyReplicas"
TOO_FEW_REPLICAS: Final = "TooFewReplicas"
SCALE_UP_LIMIT: Final = "ScaleUpLimit"
SCALE_DOWN_LIMIT: Final = "ScaleDownLimit"
SCALE_DOWN_WHILE_PENDING: Final = "ScaleDownWhilePending"
GPU_INVENTORY: Final = "GpuInventory"
NO_READY_REPLICAS: Final = "NoReadyReplicas"
WEIGHTS_BY_CAPACITY: Final = "WeightsByCapacity"

SLO_GUARD: Final = "SloGuard"
"""The SLO was missed lately: each pool got at least the fallback's replicas, and the fallback's
weights (rlscale.agents.slo_guard)."""

FALLBACKS: Final = (FALLBACK_NAN, FALLBACK_OUT_OF_RANGE, FALLBACK_UNFAMILIAR, FALLBACK_INVALID)
"""The reasons for which the shield hands the decision to the fallback policy."""

# --- the controller: no decision from the policy ----------------------------------------
SOURCE_FAILED: Final = "SourceFailed"
STALE_METRICS: Final = "StaleMetrics"
MISSING_METRICS: Final = "MissingMetrics"
PARTIAL_METRICS: Final = "PartialMetrics"
BAD_METRICS: Final = "BadMetrics"
BUNDLE_LOAD_FAILED: Final = "BundleLoadFailed"

# --- the controller: what it could not observe (``Problem.kind``) -----------------------
ProblemKind = Literal[
    "SourceFailed",             # the metric source raised (the whole collection is missing)
    "ScrapeFailed",             # a pod's /metrics refused or answered with an error status
    "ScrapeTimeout",            # a pod's /metrics did not answer in time (or is still busy)
    "ParseError",               # a pod's page or a Prometheus series could not be read
    "NoPodMetrics",             # no ready pod of a pool gave metrics
    "BackfilledPods",           # pods read again after a gap: their growth over it is unknown
    "PrometheusDown",           # Prometheus could not be queried
    "PodNotInPrometheus",       # a running pod has no series in Prometheus
    "StaleSample",              # a pod's newest sample in Prometheus is too old
    "StaleMetrics",             # the pool's newest samples are all too old
    "DeploymentUnavailable",    # a pool's Deployment or pods could not be read
    "RouteUnavailable",         # the HTTPRoute could not be read (weights unknown)
    "BackendRefMissing",        # a configured backendRef is in no rule of the HTTPRoute
    "GpuInventoryUnavailable",  # nodes or pods could not be listed (free GPUs unknown)
    "ImplausibleMetrics",       # a pod's sample is beyond physical bounds (left out)
    "OutsideWrite",             # someone else changed the replicas or weights we wrote
]
"""Why something could not be observed (the controller's problems; their severity decides
what the loop does, :mod:`rlscale.controller.problems`). ``StaleMetrics`` and
``SourceFailed`` are also the reasons of the decisions they cause."""


def pool_reason(reason: str, pool: str) -> str:
    """A per-pool intervention as written everywhere: ``Reason:pool``."""
    return f"{reason}:{pool}"


def base_reason(intervention: str) -> str:
    """The reason of an intervention without its pool (``ScaleUpLimit:l4`` -> ``ScaleUpLimit``)."""
    return intervention.split(":", 1)[0]
