"""Writers other than this controller: noticing them, and the rule followed when they write.

Someone runs ``kubectl scale``, a CI pipeline applies a manifest, an HPA scales the same
Deployment, an operator edits the HTTPRoute by hand. Silently undoing that a few decisions
later hides a fight between two controllers. So the controller remembers what it last wrote
(each pool's replicas, the route's weight per pool) and, at the start of every iteration,
compares it with what the API shows: a difference is an **outside write**. It is reported
(a warning log, a ``Warning`` Event ``OutsideWrite`` on the object, the metric
``rlscale_outside_writes_total{target}``, a ``degraded`` problem in the decision record),
naming the writer from the Deployment's ``managedFields`` (the manager owning
``spec.replicas``) where the API keeps them, and then the configured rule
(:class:`~rlscale.controller.config.OutsideWritesConfig`) is followed:

* ``back_off`` (default): leave that pool's replicas (or the route's weights) alone for
  ``back_off_s`` seconds (600), then manage it again from whatever it is then;
* ``override``: report it and write the decision anyway (the behaviour of an HPA).

Independently, a Deployment that a ``HorizontalPodAutoscaler`` targets when the controller
starts (``hpa: refuse``, the default) is never scaled by it: two autoscalers on one
Deployment undo each other. Its pool is still observed and decided (shadow comparisons), its
writes are reported as ``held``. Only what this process wrote successfully is remembered, so a
fresh leader (which wrote nothing yet) never mistakes the previous leader's writes for outside
ones, and a process that does not hold the Lease forgets what it wrote (the successor's writes
are not outside ones either).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rlscale.controller.kube import get

ROUTE = "httproute"
"""The target name of the route's weights (pools are targets by their names)."""


@dataclass(frozen=True)
class OutsideWrite:
    """One outside write found: ``target`` (a pool, or :data:`ROUTE`), what this controller
    wrote last and what the API shows now, and who wrote it (a field manager, if known)."""

    target: str
    ours: Any
    found: Any
    writer: str | None

    def __str__(self) -> str:
        who = f" by {self.writer}" if self.writer else ""
        return f"{self.target}: changed{who} from {self.ours} (our last write) to {self.found}"


class OutsideWriteGuard:
    """Remembers this controller's writes, finds outside ones and holds targets.

    Args:
        rule: ``back_off`` or ``override`` (see the module docstring).
        back_off_s: how long a target is left alone after an outside write (seconds, on the
            loop's steady clock).
    """

    def __init__(self, rule: Literal["back_off", "override"] = "back_off",
                 back_off_s: float = 600.0) -> None:
        self.rule = rule
        self.back_off_s = back_off_s
        self._ours: dict[str, Any] = {}
        self._until: dict[str, float] = {}
        self._refused: dict[str, str] = {}

    def refuse(self, target: str, why: str) -> None:
        """Never write ``target`` (e.g. a Deployment an HPA scales)."""
        self._refused[target] = why

    def forget(self) -> None:
        """Forget this controller's writes and back-offs (it lost the Lease); refusals stay."""
        self._ours.clear()
        self._until.clear()

    def wrote(self, target: str, value: Any) -> None:
        """This controller wrote ``value`` to ``target`` successfully."""
        self._ours[target] = value

    def check(self, now_s: float, found: Mapping[str, Any],
              writers: Mapping[str, str | None]) -> list[OutsideWrite]:
        """Compare what the API shows (``found``: target -> value) with our last writes;
        returns the outside writes found now (and starts their back-off)."""
        changed = []
        for target, value in found.items():
            if target not in self._ours or self._ours[target] == value:
                continue
            changed.append(OutsideWrite(target, self._ours.pop(target), value,
                                        writers.get(target)))
            if self.rule == "back_off":
                self._until[target] = now_s + self.back_off_s
        return changed

    def held(self, target: str, now_s: float) -> str | None:
        """Why ``target`` must not be written now, or None."""
        if target in self._refused:
            return self._refused[target]
        until = self._until.get(target)
        if until is None:
            return None
        if now_s >= until:
            del self._until[target]
            return None
        return f"an outside write: backing off for {until - now_s:.0f} s more"


def replicas_manager(deployment: Any) -> str | None:
    """The field manager owning ``spec.replicas`` of a Deployment (the latest such entry of
    ``metadata.managedFields``), or None when the API keeps no managed fields."""
    owners = []
    for entry in get(deployment, "metadata", "managed_fields") or []:
        fields = get(entry, "fields_v1") or {}
        if isinstance(fields, dict) and "f:replicas" in (fields.get("f:spec") or {}):
            owners.append((str(get(entry, "time") or ""), str(get(entry, "manager") or "")))
    return max(owners)[1] if owners else None


def hpa_targets(hpas: Any) -> dict[str, str]:
    """Deployment name -> HPA name for each listed HorizontalPodAutoscaler (a list
    response) whose ``scaleTargetRef`` is a Deployment."""
    out = {}
    for hpa in get(hpas, "items") or []:
        ref = get(hpa, "spec", "scale_target_ref")
        if get(ref, "kind") == "Deployment" and get(ref, "name"):
            out[str(get(ref, "name"))] = str(get(hpa, "metadata", "name"))
    return out
