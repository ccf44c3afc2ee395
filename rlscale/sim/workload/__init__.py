"""The workload layer: request streams from real traces or synthetic generators.

* :func:`read_trace` reads Azure LLM inference (2023/2024), BurstGPT, Mooncake and plain CSV
  traces; :func:`window`, :func:`time_scaled`, :func:`rate_scaled` and
  :func:`cap_total_tokens` transform them.
* Arrival processes (:class:`Poisson`, :class:`GammaRenewal`, :class:`Diurnal`,
  :class:`FlashCrowd`, :class:`Superpose`) and length models (:class:`FittedLengths`,
  :class:`TraceLengths`, :class:`ConstantLengths`) combine with :func:`generate`.
* :func:`workload_from_config` builds either from a scenario's ``workload:`` mapping.
"""

from rlscale.sim.workload.config import WorkloadConfigError, workload_from_config
from rlscale.sim.workload.generators import (
    ArrivalProcess,
    Diurnal,
    FlashCrowd,
    GammaRenewal,
    Poisson,
    Superpose,
    generate,
)
from rlscale.sim.workload.lengths import (
    ConstantLengths,
    FittedLengths,
    LengthModel,
    LognormalLengths,
    QuantileMarginal,
    TraceLengths,
    builtin_length_models,
)
from rlscale.sim.workload.traces import KNOWN_FORMATS, TraceFormatError, read_trace
from rlscale.sim.workload.transforms import (
    cap_lengths,
    cap_total_tokens,
    rate_scaled,
    time_scaled,
    window,
)
from rlscale.sim.workload.workload import Workload

__all__ = [
    "KNOWN_FORMATS",
    "ArrivalProcess",
    "ConstantLengths",
    "Diurnal",
    "FittedLengths",
    "FlashCrowd",
    "GammaRenewal",
    "LengthModel",
    "LognormalLengths",
    "Poisson",
    "QuantileMarginal",
    "Superpose",
    "TraceFormatError",
    "TraceLengths",
    "Workload",
    "WorkloadConfigError",
    "builtin_length_models",
    "cap_lengths",
    "cap_total_tokens",
    "generate",
    "rate_scaled",
    "read_trace",
    "time_scaled",
    "window",
    "workload_from_config",
]
