"""Server-side printing: ``meta.k8s.io/v1`` Tables, which ``kubectl get`` asks for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io, application/json``; a
real API server answers with a Table whose columns are those of kubectl's built-in printers.
These are the columns for the kinds the twin serves (Deployment: READY, UP-TO-DATE,
AVAILABLE, AGE; Pod: READY, STATUS, RESTARTS, AGE and, with ``-o wide``, IP and NODE; Node,
Lease, Event, HTTPRoute), and NAME and AGE for any other kind. Ages are wall-clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

Column = tuple[str, str, int, Callable[[Mapping[str, Any]], Any]]
"""(name, type, priority, cell): priority 0 columns always show, 1 only with ``-o wide``."""


def wants_table(accept: str) -> bool:
    """Whether an ``Accept`` header asks for a Table (kubectl's ``as=Table``)."""
    return "as=Table" in accept.replace(" ", "")


def human_age(seconds: float) -> str:
    """kubectl's short duration (``45s``, ``3m10s``, ``42m``, ``5h2m``, ``3d``)."""
    s = max(0, int(seconds))
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{days}d"


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


def _since(stamp: Any) -> str:
    if not isinstance(stamp, str):
        return "<unknown>"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "<unknown>"
    return human_age(time.time() - moment)


def _age(obj: Mapping[str, Any]) -> str:
    return _since(_get(obj, "metadata", "creationTimestamp"))


def _pod_status(pod: Mapping[str, Any]) -> str:
    if _get(pod, "metadata", "deletionTimestamp"):
        return "Terminating"
    phase = str(_get(pod, "status", "phase") or "Unknown")
    if phase == "Pending" and not _get(pod, "spec", "nodeName"):
        return "Pending"
    return phase


def _pod_ready(pod: Mapping[str, Any]) -> str:
    statuses = _get(pod, "status", "containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    total = len(_get(pod, "spec", "containers") or []) or len(statuses)
    return f"{ready}/{total}"


def _node_status(node: Mapping[str, Any]) -> str:
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in _get(node, "status", "conditions") or [])
    status = "Ready" if ready else "NotReady"
    return f"{status},SchedulingDisabled" if _get(node, "spec", "unschedulable") else status


def _backends(route: Mapping[str, Any]) -> str:
    refs = [ref for rule in _get(route, "spec", "rules") or []
            for ref in rule.get("backendRefs") or []]
    return ",".join(f"{ref.get('name')}:{ref.get('weight', 1)}" for ref in refs) or "<none>"


_NAME: Column = ("Name", "string", 0, lambda o: _get(o, "metadata", "name"))
_AGE: Column = ("Age", "string", 0, _age)

COLUMNS: dict[str, tuple[Column, ...]] = {
    "Deployment": (
        _NAME,
        ("Ready", "string", 0, lambda o: f"{_get(o, 'status', 'readyReplicas') or 0}/"
                                          f"{_get(o, 'spec', 'replicas') or 0}"),
        ("Up-to-date", "integer", 0, lambda o: _get(o, "status", "updatedReplicas") or 0),
        ("Available", "integer", 0, lambda o: _get(o, "status", "availableReplicas") or 0),
        _AGE,
        ("Selector", "string", 1, lambda o: ",".join(
            f"{k}={v}" for k, v in (_get(o, "spec", "selector", "matchLabels") or {}).items())),
    ),
    "Pod": (
        _NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "integer", 0, lambda o: 0),
        _AGE,
        ("IP", "string", 1, lambda o: _get(o, "status", "podIP") or "<none>"),
        ("Node", "string", 1, lambda o: _get(o, "spec", "nodeName") or "<none>"),
    ),
    "Node": (
        _NAME,
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, lambda o: "<none>"),
        _AGE,
        ("Version", "string", 0, lambda o: _get(o, "status", "nodeInfo", "kubeletVersion") or ""),
        ("GPUs", "string", 1, lambda o: ",".join(
            f"{k}={v}" for k, v in (_get(o, "status", "allocatable") or {}).items())),
    ),
    "Lease": (
        _NAME,
        ("Holder", "string", 0, lambda o: _get(o, "spec", "holderIdentity") or ""),
        _AGE,
    ),
    "Event": (
        ("Last Seen", "string", 0, lambda o: _since(o.get("lastTimestamp")
                                                    or _get(o, "metadata", "creationTimestamp"))),
        ("Type", "string", 0, lambda o: o.get("type") or ""),
        ("Reason", "string", 0, lambda o: o.get("reason") or ""),
        ("Object", "string", 0, lambda o: f"{str(_get(o, 'involvedObject', 'kind')).lower()}/"
                                          f"{_get(o, 'involvedObject', 'name')}"),
        ("Message", "string", 0, lambda o: o.get("message") or ""),
        ("Source", "string", 1, lambda o: o.get("reportingInstance") or ""),
    ),
    "HTTPRoute": (
        _NAME,
        ("Hostnames", "string", 0, lambda o: ",".join(_get(o, "spec", "hostnames") or [])),
        ("Backends", "string", 0, _backends),
        _AGE,
    ),
}


def as_table(kind: str, objects: Iterable[Mapping[str, Any]], *, resource_version: str,
             include_object: str = "Metadata", headers: bool = True) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (of ``kind``).

    Args:
        include_object: ``Metadata`` (rows carry ``PartialObjectMetadata``), ``Object`` (the
            whole object) or ``None`` — the ``?includeObject=`` parameter.
        headers: include the column definitions (a watch sends them with its first event).
    """
    columns = COLUMNS.get(kind, (_NAME, _AGE))
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [cell(obj) for _, _, _, cell in columns]}
        if include_object == "Object":
            row["object"] = dict(obj)
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": dict(obj.get("metadata") or {})}
        rows.append(row)
    definitions = [{"name": name, "type": kind_, "format": "name" if name == "Name" else "",
                    "description": "", "priority": priority}
                   for name, kind_, priority, _ in columns] if headers else []
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
