"""The twin: a simulated cluster served as a Kubernetes API and vLLM pods, to run the real
controller against.

``rlscale twin --scenario NAME [--speed N]`` (or ``python -m rlscale.twin``) runs the simulator
in real time or N times faster and serves, on loopback: a Kubernetes API (Deployments with the
scale subresource, Pods, Nodes, Services, an HTTPRoute, Leases, Events) that kubectl and the
official client talk to, and every simulated pod's vLLM ``/metrics`` on its own 127.0.x.y
address. It writes a kubeconfig and a controller config for the scenario. Modules, one idea
each:

================  ================================================================
``selectors``     label and field selectors
``tables``        ``kubectl get`` tables (server-side printing)
``faults``        failures the API is told to inject, and its log of writes
``kubeapi``       the Kubernetes API: kmock's emulator plus versions, conflicts, PUT,
                  Scale, selectors, watch, tables and injected failures
``objects``       the Kubernetes objects of a simulated cluster, as dicts
``mirror``        simulator <-> API, both ways, every tick (``PoolMirror``: what both
                  mirrors share)
``pod_metrics``   the pods' ``/metrics`` servers on their own addresses
``files``         kubeconfig, controller config (and how time is scaled), Prometheus file_sd
``status``        SLO attainment so far and the status line
``attach``        ``--kubeconfig``: the twin as virtual GPU nodes and kubelets of a real
                  API server (KWOK-style), instead of ``kubeapi`` and ``mirror``
``localplane``    a local etcd + kube-apiserver + kube-controller-manager from
                  ``tools/kube/build.sh``'s binary, to attach to
``runner``        the loop, the ``/twin/status`` and ``/twin/faults`` endpoints
``cli``           the command line
================  ================================================================

It needs the ``twin`` extra (kmock, aiohttp; Python >= 3.11). It imports the simulator and
:mod:`rlscale.metrics`, never the controller, the agents or the environment; the controller
never imports it.
"""
