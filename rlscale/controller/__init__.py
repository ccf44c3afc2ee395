"""The in-cluster controller: metric sources, Kubernetes actuator, leader election, the control
loop, and its own metrics and health endpoints.

``python -m rlscale.controller --config controller.yaml`` (or ``rlscale controller``) runs it;
:mod:`rlscale.controller.config` documents the YAML. Modules, one idea each:

========================  ================================================================
``config``                the YAML, validated (read with :mod:`rlscale.configschema`)
``kube``                  the Kubernetes API clients and how their errors are classified
``cluster_state``         Deployments, pods, HTTPRoute weights and free GPUs from the API
``sources``               the ``MetricSource`` protocol and the direct pod scrape
``prometheus``            the Prometheus source
``plausibility``          physical bounds a pod's sample must respect to be used
``outside_writes``        writes by others to what the controller wrote, and the rule followed
``policies``              the bundle or heuristic behind the shield, with its fallback
``loop``                  one control iteration and the loop
``clocks``                the steady clock: durations monotonic, wall time for stamps
``actuator``              scaling Deployments and setting HTTPRoute weights, with retries
``leader``                leader election on a Lease, and the fence every write asks
``observability``         Prometheus metrics, /healthz and /readyz, JSON logs, Events
``cli``                   the command line
========================  ================================================================

Neither torch, stable-baselines3, gymnasium nor the simulator is imported: the policy runs on
the bundle's numpy runtime.
"""

from rlscale.configschema import ConfigError
from rlscale.controller.config import ControllerConfig, load_config, parse_config

__all__ = ["ConfigError", "ControllerConfig", "load_config", "parse_config"]
