"""The simulator: a request-level, event-driven model of vLLM pools on Kubernetes.

* :mod:`rlscale.sim.workload` — trace readers and generators (what arrives).
* :mod:`rlscale.sim.profile` — per (model, GPU, TP) performance profiles with cited sources.
* :mod:`rlscale.sim.engine` — one vLLM engine: continuous batching, chunked prefill, KV cache.
* :mod:`rlscale.sim.cluster` — pods, GPUs, router and gateway, driven by an event loop.
* :mod:`rlscale.sim.scenario` — scenario YAML files; :mod:`rlscale.sim.run` — a static run.
* :mod:`rlscale.sim.export` — the cluster as a metrics snapshot in vLLM's schema.

No gymnasium, no torch: the environment and the agents build on top of this package.
"""
