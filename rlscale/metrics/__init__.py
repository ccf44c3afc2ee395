"""What a cluster shows about itself: vLLM pod metrics and Kubernetes replica state.

Shared by the simulator (which produces it), the environment and the in-cluster controller
(which build observations from it): the snapshot types, vLLM's ``/metrics`` text (rendered and
parsed in :mod:`~rlscale.metrics.exposition`), histogram arithmetic
(:mod:`~rlscale.metrics.histograms`), interval statistics (:mod:`~rlscale.metrics.intervals`),
the observation's entries (:mod:`~rlscale.metrics.features`), what it is built for
(:mod:`~rlscale.metrics.observation_config`) and the builder
(:mod:`~rlscale.metrics.observation`). Depends on the standard library and numpy;
prometheus-client is imported only by the exposition functions.
"""

from rlscale.metrics.exposition import (
    MetricsParseError,
    Spelling,
    parse_pod_metrics,
    render_pod_metrics,
)
from rlscale.metrics.histograms import histogram_fraction_above, histogram_quantile
from rlscale.metrics.intervals import PoolInterval, interval_stats
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo
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
