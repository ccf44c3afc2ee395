"""What the twin's Kubernetes API is told to get wrong, and what it was asked to write.

:class:`ApiFaults` makes the next N requests to a resource fail with a given status (409
Conflict, 500, 503, ...), as a busy or broken API server would; :class:`ApiWrite` is one entry
of the log of write requests the API answered (the end-to-end tests read it to tell who wrote
what, and when).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ApiWrite:
    """One write request the API answered.

    Attributes:
        time_s: Unix seconds; method: ``POST``/``PUT``/``PATCH``/``DELETE``;
        resource: ``plural`` or ``plural/subresource``; namespace / name: the object;
        status: the HTTP status answered; field_manager: the writer's ``?fieldManager=``;
        replicas: a Deployment's ``spec.replicas`` after a successful write to it.
    """

    time_s: float
    method: str
    resource: str
    namespace: str | None
    name: str | None
    status: int
    field_manager: str = ""
    replicas: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"time_s": self.time_s, "method": self.method, "resource": self.resource,
                "namespace": self.namespace, "name": self.name, "status": self.status,
                "field_manager": self.field_manager, "replicas": self.replicas}


class ApiFaults:
    """Failures to inject: the next ``count`` writes to a resource answer ``status``.

    ``target`` is a resource as :func:`resource_path` names it: ``deployments/scale`` (the
    scale subresource only), ``deployments`` (the Deployment and its subresources),
    ``httproutes``, ``leases``, or ``*`` (any resource); with ``reads`` the failures also hit
    GET requests (an API that is down).
    """

    def __init__(self) -> None:
        self._planned: dict[tuple[str, bool], deque[int]] = {}

    def add(self, target: str, status: int, count: int = 1, *, reads: bool = False) -> None:
        """Make the next ``count`` matching requests answer ``status``."""
        if not 400 <= status <= 599:
            raise ValueError(f"an injected failure needs an HTTP error status, got {status}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._planned.setdefault((target, reads), deque()).extend([status] * count)

    def clear(self) -> None:
        """Forget every planned failure."""
        self._planned.clear()

    def pending(self) -> dict[str, list[int]]:
        """Planned failures per target (``+reads`` marks those that also hit reads)."""
        return {f"{t}{'+reads' if r else ''}": list(q) for (t, r), q in self._planned.items()
                if q}

    def take(self, resource: str, write: bool) -> int | None:
        """The status the next request to ``resource`` must fail with, or None."""
        plural = resource.split("/", 1)[0]
        for (target, reads), queue in self._planned.items():
            if queue and (write or reads) and target in ("*", resource, plural):
                return queue.popleft()
        return None
