"""Writing decisions to the cluster: Deployment replicas and HTTPRoute weights.

* Replicas: a JSON merge patch ``{"spec": {"replicas": n}}`` on the Deployment's ``scale``
  subresource (``AppsV1Api.patch_namespaced_deployment_scale``), as ``kubectl scale`` and the
  HPA do: nothing else of the Deployment is touched.
* Weights: the HTTPRoute (``gateway.networking.k8s.io/v1``) is read, every backendRef named in
  the weights gets its new ``weight`` in every rule, and ``spec.rules`` is written back with a
  JSON merge patch carrying the ``metadata.resourceVersion`` that was read, so a concurrent
  change makes the API answer 409 Conflict instead of being overwritten; the route is then
  re-read and the weights re-applied. Gateway API weights are int32 (0 - 1,000,000); shares
  are turned into integers summing to :data:`WEIGHT_TOTAL` by :func:`integer_weights`.

Errors, as kopf classifies handler errors: 409 (conflict), 429 (throttled), 5xx and
connection failures are retried with exponential backoff and become a
:class:`TemporaryActuationError` when the attempts run out; any other 4xx (403 forbidden, 404,
422 invalid) is a :class:`PermanentActuationError` at once, never retried.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from rlscale.controller.cluster_state import GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTES
from rlscale.controller.kube import KubeClients, api_status, describe, get, is_temporary
from rlscale.controller.resources import RouteConfig
from rlscale.weights import integer_weights

T = TypeVar("T")

WEIGHT_TOTAL = 1000
"""What integer routing weights sum to (Gateway API weights are int32 0 - 1,000,000)."""
MERGE_PATCH = "application/merge-patch+json"


class ActuationError(Exception):
    """A write to the cluster failed."""


class TemporaryActuationError(ActuationError):
    """A write failed for a reason that may pass (conflict, throttling, server or connection
    error) after ``attempts`` tries; the next decision may try again."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class PermanentActuationError(ActuationError):
    """A write the API refused for good (forbidden, not found, invalid): not retried."""


class FencedError(ActuationError):
    """A write not sent: this process could not prove it holds the Lease at that moment
    (see :meth:`rlscale.controller.leader.LeaderElector.holds_lease`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, waiting ``min(max_delay_s, base_delay_s × 2^i)`` seconds
    after failed try ``i`` (0-based)."""

    attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt``."""
        return float(min(self.max_delay_s, self.base_delay_s * 2.0 ** attempt))


class Actuator(Protocol):
    """What the control loop writes through."""

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        """Set the Deployment's desired replicas."""

    def set_weights(self, route: RouteConfig, weights: Mapping[str, int]) -> None:
        """Set the integer weight of each named backendRef of ``route``."""


class KubernetesActuator:
    """Writes through the Kubernetes API with bounded retries (see the module docstring).

    Args:
        clients: ``apps`` (``AppsV1Api``) and ``custom`` (``CustomObjectsApi``) are used.
        retry: attempts and backoff.
        sleep: how to wait between attempts (tests pass a recorder; never sleeps otherwise).
        field_manager: recorded in ``managedFields`` for every write.
        timeout_s: per API request (seconds).
        fence: asked immediately before every write request (each retry too); False raises
            :class:`FencedError` and nothing is sent. Default: always allowed.
    """

    def __init__(self, clients: KubeClients, *, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 field_manager: str = "rlscale-controller", timeout_s: float = 10.0,
                 fence: Callable[[], bool] = lambda: True) -> None:
        self.apps = clients.apps
        self.custom = clients.custom
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.field_manager = field_manager
        self.timeout_s = timeout_s
        self.fence = fence

    def _check_fence(self, what: str) -> None:
        if not self.fence():
            raise FencedError(f"{what}: not sent: this process cannot prove it holds the Lease "
                              f"now")

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        """Patch ``deployments/scale`` to ``replicas`` (>= 0)."""
        if replicas < 0:
            raise PermanentActuationError(f"scale {namespace}/{deployment}: replicas must be "
                                          f">= 0, got {replicas}")
        what = f"scale {namespace}/{deployment} to {replicas}"

        def attempt() -> None:
            self._check_fence(what)
            self.apps.patch_namespaced_deployment_scale(
                deployment, namespace, {"spec": {"replicas": int(replicas)}},
                field_manager=self.field_manager, _content_type=MERGE_PATCH,
                _request_timeout=self.timeout_s)

        self._with_retries(what, attempt)

    def set_weights(self, route: RouteConfig, weights: Mapping[str, int]) -> None:
        """Set ``weights`` (backendRef name -> integer weight) on the HTTPRoute."""
        bad = {k: v for k, v in weights.items() if not 0 <= v <= 1_000_000}
        if bad:
            raise PermanentActuationError(f"HTTPRoute {route.namespace}/{route.name}: weights "
                                          f"must lie in [0, 1000000], got {bad}")
        what = f"set weights {dict(weights)} on HTTPRoute {route.namespace}/{route.name}"

        def attempt() -> None:
            current = self.custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, route.namespace, HTTPROUTES, route.name,
                _request_timeout=self.timeout_s)
            patch = weights_patch(current, weights)
            if patch is None:
                return
            self._check_fence(what)
            self.custom.patch_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, route.namespace, HTTPROUTES, route.name, patch,
                field_manager=self.field_manager, _content_type=MERGE_PATCH,
                _request_timeout=self.timeout_s)

        self._with_retries(what, attempt)

    def _with_retries(self, what: str, call: Callable[[], T]) -> T:
        last: BaseException | None = None
        for attempt in range(self.retry.attempts):
            try:
                return call()
            except ActuationError:
                raise
            except Exception as err:  # classified below: temporary, permanent or a bug
                if api_status(err) is None:
                    raise PermanentActuationError(f"{what}: {type(err).__name__}: {err}"
                                                  ) from err
                if not is_temporary(err):
                    raise PermanentActuationError(f"{what}: {describe(err)}") from err
                last = err
            if attempt + 1 < self.retry.attempts:
                self.sleep(self.retry.delay_s(attempt))
        assert last is not None
        raise TemporaryActuationError(
            f"{what}: gave up after {self.retry.attempts} attempts: {describe(last)}",
            attempts=self.retry.attempts) from last


def weights_patch(route: Any, weights: Mapping[str, int]) -> dict[str, Any] | None:
    """The merge patch setting ``weights`` on ``route`` (an HTTPRoute as a dict), or None when
    every weight is already set.

    Raises:
        PermanentActuationError: a named backendRef is in no rule of the route.
    """
    rules = copy.deepcopy(get(route, "spec", "rules") or [])
    found: set[str] = set()
    changed = False
    for rule in rules:
        for ref in rule.get("backendRefs") or []:
            name = ref.get("name")
            if name in weights:
                found.add(name)
                if ref.get("weight", 1) != weights[name]:
                    ref["weight"] = int(weights[name])
                    changed = True
    absent = sorted(set(weights) - found)
    if absent:
        raise PermanentActuationError(
            f"HTTPRoute {get(route, 'metadata', 'namespace')}/{get(route, 'metadata', 'name')} "
            f"has no backendRef named {absent}")
    if not changed:
        return None
    return {"metadata": {"resourceVersion": get(route, "metadata", "resourceVersion")},
            "spec": {"rules": rules}}


def backend_weights(route: RouteConfig, pool_weights: Mapping[str, float],
                    total: int = WEIGHT_TOTAL) -> dict[str, int]:
    """Integer weight per backendRef: pools' shares of ``total``, each pool's split evenly
    over its backendRefs."""
    pools = list(pool_weights)
    per_pool = integer_weights([pool_weights[p] for p in pools], total)
    out: dict[str, int] = {}
    for pool, weight in zip(pools, per_pool, strict=True):
        services = route.services_of(pool)
        for service, part in zip(services, integer_weights([1.0] * len(services), weight),
                                 strict=True):
            out[service] = part
    return out
