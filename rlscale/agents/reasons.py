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

from typing import Final

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

FALLBACKS: Final = (FALLBACK_NAN, FALLBACK_OUT_OF_RANGE, FALLBACK_UNFAMILIAR, FALLBACK_INVALID)
"""The reasons for which the shield hands the decision to the fallback policy."""

# --- the controller: no decision from the policy ----------------------------------------
SOURCE_FAILED: Final = "SourceFailed"
STALE_METRICS: Final = "StaleMetrics"
MISSING_METRICS: Final = "MissingMetrics"
PARTIAL_METRICS: Final = "PartialMetrics"
BAD_METRICS: Final = "BadMetrics"
BUNDLE_LOAD_FAILED: Final = "BundleLoadFailed"


def pool_reason(reason: str, pool: str) -> str:
    """A per-pool intervention as written everywhere: ``Reason:pool``."""
    return f"{reason}:{pool}"


def base_reason(intervention: str) -> str:
    """The reason of an intervention without its pool (``ScaleUpLimit:l4`` -> ``ScaleUpLimit``)."""
    return intervention.split(":", 1)[0]
