"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two controllers never both act.

The algorithm of client-go's ``leaderelection`` package:

* every ``retry_period_s`` a candidate reads the Lease; if there is none it creates one
  naming itself (409 on create: someone else was faster);
* a Lease held by another identity is taken over only when it has **expired**: its record
  (holder, renew time, resourceVersion) has not changed for ``lease_duration_s`` as measured
  on the candidate's own clock since it first saw that record (so clock skew between
  machines does not matter);
* the holder renews by writing ``renewTime`` with the ``resourceVersion`` it read (a PUT):
  a 409 Conflict means another candidate wrote first, and this attempt failed;
* a leader whose renewals keep failing steps down once ``renew_deadline_s`` has passed since
  its last successful renewal (before the Lease can expire for the others, as
  ``renew_deadline_s < lease_duration_s``);
* on shutdown the leader releases the Lease (empty holder), so a successor need not wait.

**Fencing.** :attr:`LeaderElector.is_leader` is what the last round found; a process that was
paused (SIGSTOP, a long GC, a frozen VM) still believes it when it resumes, while another
candidate may have taken the Lease over. Writers therefore ask :meth:`LeaderElector.holds_lease`
immediately before every write: true only while the monotonic clock is within
``renew_deadline_s`` of the start of this candidate's last successful renewal, that is the
renewal plus ``lease_duration_s`` less a safety margin of ``lease_duration_s -
renew_deadline_s``. A rival can take over only ``lease_duration_s`` after it *saw* that
renewal (which it cannot see before it was sent), so a resumed process that cannot prove a
recent renewal writes nothing. The one window left is a pause between that check and the
request leaving the process (microseconds: the check is the last thing before the send).

Clocks: every duration is judged on ``clock`` (monotonic seconds, so a wall-clock step changes
nothing); ``wall`` (Unix seconds) only stamps ``acquireTime`` and ``renewTime``. Both are
injectable, so tests run the protocol without sleeping; :meth:`LeaderElector.run` is the only
method that sleeps.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from rlscale.controller.kube import api_status, describe, get

log = logging.getLogger("rlscale.controller.leader")


def micro_time(seconds: float) -> str:
    """A Kubernetes ``MicroTime`` (RFC 3339, microseconds, UTC) for Unix ``seconds``."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """A candidate identity unique to this process: the host name (the pod name in a cluster)
    plus ``_`` and a random UUID, as client-go's examples build it. Two controllers started
    from the same config never share it."""
    return f"{socket.gethostname() or 'rlscale-controller'}_{uuid.uuid4()}"


class LeaderElector:
    """One candidate for the Lease ``namespace/name``.

    Args:
        coordination: ``CoordinationV1Api`` (``read``, ``create``, ``replace_namespaced_lease``).
        identity: this candidate's unique name (see :func:`default_identity`).
        lease_duration_s / renew_deadline_s / retry_period_s: seconds (client-go's 15/10/2).
        clock: monotonic seconds (durations); wall: Unix seconds (the Lease's timestamps);
        on_change: called with the new leadership (True/False).

    Attributes:
        is_leader: whether the last round found this candidate holding the Lease (writers
            ask :meth:`holds_lease`).
    """

    def __init__(self, coordination: Any, *, name: str, namespace: str, identity: str,
                 lease_duration_s: float = 15.0, renew_deadline_s: float = 10.0,
                 retry_period_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 on_change: Callable[[bool], None] | None = None) -> None:
        if not 0 < retry_period_s < renew_deadline_s < lease_duration_s:
            raise ValueError("leader election needs 0 < retry_period_s < renew_deadline_s < "
                             f"lease_duration_s, got {retry_period_s}, {renew_deadline_s}, "
                             f"{lease_duration_s}")
        self.api = coordination
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self.clock = clock
        self.wall = wall
        self.on_change = on_change
        self.is_leader = False
        self.last_renew_s = -float("inf")
        """When the last successful renewal began (``clock`` seconds)."""
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = -float("inf")
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ fencing
    def holds_lease(self) -> bool:
        """Whether this candidate may write *now*: it is the leader and its last successful
        renewal began less than ``renew_deadline_s`` ago on the monotonic clock (see the
        module docstring). Ask it immediately before every write."""
        return self.is_leader and self.clock() < self.last_renew_s + self.renew_deadline_s

    # ------------------------------------------------------------------ one round
    def tick(self) -> bool:
        """One acquire-or-renew attempt; updates and returns :attr:`is_leader`."""
        with self._lock:
            now = self.clock()
            try:
                won = self._try_acquire_or_renew(now)
            except Exception as err:  # API down, conflict, forbidden: this attempt failed
                log.debug("lease %s/%s: attempt failed: %s", self.namespace, self.name,
                          describe(err))
                won = False
            if won:
                self.last_renew_s = now
                self._set(True)
            elif self.is_leader and now - self.last_renew_s > self.renew_deadline_s:
                log.warning("lease %s/%s: no renewal for %.1f s (deadline %.1f s): stepping "
                            "down", self.namespace, self.name, now - self.last_renew_s,
                            self.renew_deadline_s)
                self._set(False)
            return self.is_leader

    def _try_acquire_or_renew(self, now: float) -> bool:
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except Exception as err:
            if api_status(err) != 404:
                raise
            wall = self.wall()
            self.api.create_namespaced_lease(self.namespace, self._body(None, wall, 0, wall))
            self._observe(("created", self.identity), now)
            return True
        spec = get(lease, "spec")
        holder = get(spec, "holder_identity") or ""
        record = (holder, str(get(spec, "renew_time")), get(lease, "metadata", "resource_version"))
        if record != self._observed:
            self._observe(record, now)
        duration = float(get(spec, "lease_duration_seconds") or self.lease_duration_s)
        if holder and holder != self.identity and now < self._observed_at + duration:
            if self.is_leader:
                log.warning("lease %s/%s is held by %s: stepping down", self.namespace,
                            self.name, holder)
                self._set(False)
            return False
        transitions = int(get(spec, "lease_transitions") or 0)
        wall = self.wall()
        if holder == self.identity:
            acquired = get(spec, "acquire_time")
            acquire_s = acquired.timestamp() if isinstance(acquired, datetime) else wall
        else:
            acquire_s, transitions = wall, transitions + 1
        body = self._body(get(lease, "metadata", "resource_version"), acquire_s, transitions,
                          wall)
        self.api.replace_namespaced_lease(self.name, self.namespace, body)
        return True

    def _observe(self, record: tuple[Any, ...], now: float) -> None:
        self._observed = record
        self._observed_at = now

    def _body(self, resource_version: str | None, acquire_s: float, transitions: int,
              renew_s: float) -> dict[str, Any]:
        """The Lease to write (``acquire_s`` and ``renew_s``: Unix seconds)."""
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                "spec": {"holderIdentity": self.identity,
                         "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
                         "acquireTime": micro_time(acquire_s), "renewTime": micro_time(renew_s),
                         "leaseTransitions": transitions}}

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info("lease %s/%s: %s is %s", self.namespace, self.name, self.identity,
                     "now the leader" if leader else "no longer the leader")
            if self.on_change is not None:
                self.on_change(leader)

    # ------------------------------------------------------------------ lifetime
    def release(self) -> None:
        """Give the Lease up (empty holder) if this candidate holds it; errors are logged."""
        with self._lock:
            if not self.is_leader:
                return
            try:
                lease = self.api.read_namespaced_lease(self.name, self.namespace)
                if get(lease, "spec", "holder_identity") == self.identity:
                    wall = self.wall()
                    body = self._body(get(lease, "metadata", "resource_version"), wall,
                                      int(get(lease, "spec", "lease_transitions") or 0), wall)
                    body["spec"]["holderIdentity"] = None
                    body["spec"]["leaseDurationSeconds"] = 1
                    self.api.replace_namespaced_lease(self.name, self.namespace, body)
            except Exception as err:  # the Lease then expires on its own
                log.warning("lease %s/%s: release failed: %s", self.namespace, self.name,
                            describe(err))
            self._set(False)

    def run(self, stop: threading.Event) -> None:
        """Tick every ``retry_period_s`` until ``stop`` is set, then release the Lease."""
        while not stop.is_set():
            self.tick()
            stop.wait(self.retry_period_s)
        self.release()
