"""What a cluster shows about itself: vLLM pod metrics and Kubernetes replica state.

Shared by the simulator (which produces it), the environment and the in-cluster controller
(which build observations from it). Depends on nothing but the standard library.
"""

from rlscale.metrics.snapshot import ClusterSnapshot, HistogramData, PodSample, PoolStatus

__all__ = ["ClusterSnapshot", "HistogramData", "PodSample", "PoolStatus"]
