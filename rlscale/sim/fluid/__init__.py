"""The fast engine: the cluster's pods, GPUs, gateway and routing as in :mod:`rlscale.sim`, each
pool's vLLM engines as a fluid of token queues and decoding sequences stepped per second, each
request's latencies read off the fluid (see :mod:`rlscale.sim.fluid.cluster`)."""

from rlscale.sim.fluid.cluster import SUBSTEP_S, FluidCluster
from rlscale.sim.fluid.export import fluid_snapshot

__all__ = ["SUBSTEP_S", "FluidCluster", "fluid_snapshot"]
