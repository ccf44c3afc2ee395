"""What a cluster shows about itself: vLLM pod metrics and Kubernetes replica state.

Shared by the simulator (which produces it), the environment and the in-cluster controller
(which build observations from it): the snapshot types, vLLM's ``/metrics`` text (rendered and
parsed in :mod:`~rlscale.metrics.exposition`), and the observation builder
(:mod:`~rlscale.metrics.observation`). Depends on the standard library and numpy;
prometheus-client is imported only by the exposition functions.
"""

from rlscale.metrics.exposition import (
    MetricsParseError,
    Spelling,
    parse_pod_metrics,
    render_pod_metrics,
)
from rlscale.metrics.observation import (
    ObservationBuilder,
    ObservationConfig,
    PoolInfo,
    PoolInterval,
    histogram_fraction_above,
    histogram_quantile,
    interval_stats,
)
from rlscale.metrics.snapshot import ClusterSnapshot, HistogramData, PodSample, PoolStatus

__all__ = [
    "ClusterSnapshot",
    "HistogramData",
    "MetricsParseError",
    "ObservationBuilder",
    "ObservationConfig",
    "PodSample",
    "PoolInfo",
    "PoolInterval",
    "PoolStatus",
    "Spelling",
    "histogram_fraction_above",
    "histogram_quantile",
    "interval_stats",
    "parse_pod_metrics",
    "render_pod_metrics",
]
