"""The twin's Kubernetes API: kmock's in-memory emulator with what a controller and kubectl need.

:class:`Kube` is a thin subclass of ``kmock.KubernetesEmulator`` (an in-memory Kubernetes API
over real HTTP; the official client and kubectl talk to it). It adds what kmock lacks:

* **resourceVersions** from one counter, bumped on every write; ``metadata.generation`` bumped
  when ``spec`` changes; ``uid`` and ``creationTimestamp`` on create;
* **conflicts**: a PATCH or PUT naming a ``metadata.resourceVersion`` other than the stored one
  is refused with 409 Conflict (optimistic concurrency, as the API server does);
* **PUT** (replace), **PATCH** as JSON merge patch (also for ``strategic-merge-patch``, which is
  the same for the fields used here) and as JSON patch (``json-patch+json``);
* the **Scale subresource** of Deployments (``GET``/``PATCH``/``PUT .../deployments/NAME/scale``,
  kind ``autoscaling/v1 Scale``), as ``kubectl scale`` and the HPA use it;
* **label and field selectors** on lists and watches (:mod:`rlscale.twin.selectors`);
* **watch** (``?watch=true``) streamed as JSON lines with the right content type, honouring
  ``resourceVersion`` (no replay of existing objects when given) and ``timeoutSeconds``;
* **Tables** for ``kubectl get`` (:mod:`rlscale.twin.tables`) and discovery that kubectl
  accepts (subresources without short names; ``deployments/scale`` as ``autoscaling/v1``);
* **injected failures** (:class:`ApiFaults`): the next N writes to a resource answer a given
  status (409, 500, ...), and a log of every write (:class:`ApiWrite`).

The simulator's side writes objects through :meth:`Kube.put_object` / :meth:`Kube.delete_object`
(same versioning, same watch events), never over HTTP. kmock's internals used here
(``_handle``, ``_serve_list``, ``_serve_fetch``, ``_serve_version``, ``_buses``, ``_requests``)
are those of kmock 0.8, which the ``twin`` extra pins.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gzip
import importlib.resources
import json
import time
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock

from rlscale.twin.faults import ApiFaults, ApiWrite
from rlscale.twin.selectors import SelectorError, fields_match, labels_match
from rlscale.twin.tables import as_table, wants_table

DEPLOYMENTS = kmock.resource("apps/v1/deployments")
PODS = kmock.resource("v1/pods")
NODES = kmock.resource("v1/nodes")
SERVICES = kmock.resource("v1/services")
NAMESPACES = kmock.resource("v1/namespaces")
EVENTS = kmock.resource("v1/events")
LEASES = kmock.resource("coordination.k8s.io/v1/leases")
HTTPROUTES = kmock.resource("gateway.networking.k8s.io/v1/httproutes")

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def timestamp(seconds: float | None = None) -> str:
    """An RFC 3339 UTC timestamp (Kubernetes ``Time``) for Unix ``seconds`` (default now)."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def status_response(code: int, reason: str, message: str) -> aiohttp.web.Response:
    """A ``v1 Status`` failure, as the API server answers errors."""
    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {},
                                      "status": "Failure", "code": code, "reason": reason,
                                      "message": message}, status=code)


_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge recursively, ``null`` deletes, anything else
    (lists included) replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def resource_path(resource: kmock.resource, subresource: str | None = None) -> str:
    """``plural`` or ``plural/subresource`` (how faults and the write log name a resource)."""
    plural = str(resource.plural)
    return f"{plural}/{subresource}" if subresource else plural


UNSERVED_VERSIONS = ("metrics.k8s.io/v1beta1", "events.k8s.io/v1",
                     "gateway.networking.k8s.io/v1beta1")
"""API versions of kmock's bundled discovery left out: their ``pods``, ``nodes``, ``events``
and ``httproutes`` would shadow the served ones for ``kubectl get``."""


def register_resources(kube: kmock.KubernetesEmulator) -> None:
    """Kubernetes' built-in resources (kmock's bundled discovery, less
    :data:`UNSERVED_VERSIONS`) and the Gateway API HTTPRoute."""
    bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
    kube.resources.load_data(gzip.decompress(bundled.read_bytes()))  # = load_bundled()
    for resource in [r for r in kube.resources
                     if f"{r.group}/{r.version}" in UNSERVED_VERSIONS]:
        del kube.resources[resource]
    kube.resources[HTTPROUTES] = kmock.ResourceInfo(
        kind="HTTPRoute", namespaced=True, singular="httproute", categories={"gateway-api"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources={"status"})


@attrs.define(kw_only=True)
class Kube(kmock.KubernetesEmulator):
    """kmock's emulator plus versions, conflicts, PUT, Scale, selectors, watch, Tables and
    injected failures (see the module docstring).

    Attributes:
        faults: failures to inject (:class:`ApiFaults`).
        writes: the most recent write requests (:class:`ApiWrite`), oldest first.
    """

    faults: ApiFaults = attrs.field(factory=ApiFaults)
    writes: deque[ApiWrite] = attrs.field(factory=lambda: deque(maxlen=10_000))
    _version: int = attrs.field(default=100, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        register_resources(self)

    # ------------------------------------------------------------------ versions
    def next_version(self) -> str:
        """A new resourceVersion (a counter, as a string)."""
        self._version += 1
        return str(self._version)

    @property
    def current_version(self) -> str:
        """The newest resourceVersion handed out."""
        return str(self._version)

    # ------------------------------------------------------------------ direct access
    def get_object(self, resource: kmock.resource, namespace: str | None,
                   name: str) -> dict[str, Any] | None:
        """The stored object (a copy), or None if absent or deleted."""
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def exists(self, resource: kmock.resource, namespace: str | None, name: str) -> bool:
        """Whether a live object is stored under that key."""
        key = (resource, namespace, name)
        return key in self.objects and not self.objects[key].deleted

    def objects_of(self, resource: kmock.resource,
                   namespace: str | None = None) -> list[dict[str, Any]]:
        """Every live object of ``resource`` (in ``namespace`` if given), as stored."""
        return [obj.raw for (res, ns, _), obj in self.objects.items()
                if res == resource and not obj.deleted and (namespace is None or ns == namespace)]

    async def put_object(self, resource: kmock.resource, namespace: str | None, name: str,
                         body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object as the cluster's own controllers would: a new
        resourceVersion, ``generation`` bumped if ``spec`` changed, a watch event."""
        key = (resource, namespace, name)
        old = None if key not in self.objects or self.objects[key].deleted else (
            self.objects[key].raw)
        return await self._store(key, dict(body), old)

    async def delete_object(self, resource: kmock.resource, namespace: str | None,
                            name: str) -> None:
        """Delete an object (a DELETED watch event); absent objects are ignored."""
        key = (resource, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            raw = self.objects[key].raw
            self.objects[key].delete()
            del self.objects[key].history[:-2]  # keep memory flat over long runs
            await self._buses[resource].put({"type": "DELETED", "object": raw})

    def forget_requests(self, keep: int = 200) -> None:
        """Drop all but the last ``keep`` requests kmock remembers for assertions (a twin
        running for hours would otherwise keep every request in memory)."""
        for holder in (self, *self._payloads):
            requests = getattr(holder, "_requests", None)
            if isinstance(requests, list) and len(requests) > keep:
                del requests[:-keep]
        for errors in self._errors:
            del errors[:]

    async def _store(self, key: tuple[kmock.resource, str | None, str], body: dict[str, Any],
                     old: Mapping[str, Any] | None) -> dict[str, Any]:
        resource, namespace, name = key
        metadata = dict(body.get("metadata") or {})
        metadata.update(name=name, resourceVersion=self.next_version())
        if namespace is not None:
            metadata["namespace"] = namespace
        if old is None:
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", timestamp())
            if "spec" in body:
                metadata["generation"] = 1
        else:
            previous = old.get("metadata") or {}
            for field in ("uid", "creationTimestamp", "generation"):
                if field in previous:
                    metadata[field] = previous[field]
            if "spec" in body and body.get("spec") != old.get("spec"):
                metadata["generation"] = int(previous.get("generation") or 0) + 1
        body["metadata"] = metadata
        if key in self.objects and not self.objects[key].deleted:
            self.objects[key].create(body)
            del self.objects[key].history[:-4]  # a few versions for tests; memory stays flat
        else:
            self.objects[key] = body
        raw: dict[str, Any] = self.objects[key].raw
        await self._buses[resource].put({"type": "ADDED" if old is None else "MODIFIED",
                                         "object": raw})
        return raw

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        method = str(request.method).upper().rsplit(".", 1)[-1]
        path = resource_path(request.resource, request.subresource)
        if str(request.params.get("watch", "")).lower() in ("true", "1"):
            return await self._watch(request)
        write = method in WRITE_METHODS
        failure = self.faults.take(path, write)
        if failure is not None:
            response: aiohttp.web.StreamResponse = status_response(
                failure, _REASONS.get(failure, "InjectedFailure"),
                f"injected failure ({failure}) for {method} {path}")
        elif request.subresource == "scale" and request.resource == DEPLOYMENTS:
            response = await self._scale(request, method)
        elif method in ("PUT", "PATCH") and request.name:
            response = await self._update(request, method)
        elif method == "POST" and request.name is None and isinstance(request.data, dict):
            response = await self._create(request)
        else:
            response = await super()._handle(request)
        if write:
            replicas = None
            if request.resource == DEPLOYMENTS and request.name and response.status < 300:
                stored = self.get_object(DEPLOYMENTS, request.namespace, request.name)
                replicas = ((stored or {}).get("spec") or {}).get("replicas")
            self.writes.append(ApiWrite(
                time.time(), method, path, request.namespace, request.name, response.status,
                str(request.params.get("fieldManager", "")), replicas))
        return response

    async def _create(self, request: Any) -> aiohttp.web.StreamResponse:
        data: dict[str, Any] = request.data
        metadata = data.get("metadata") or {}
        name = metadata.get("name")
        if not name:
            return status_response(422, "Invalid", "metadata.name: Required value")
        namespace = request.namespace or metadata.get("namespace")
        key = (request.resource, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return status_response(409, "AlreadyExists",
                                   f"{request.resource.plural} {name!r} already exists")
        raw = await self._store(key, copy.deepcopy(data), None)
        return aiohttp.web.json_response(raw, status=201)

    async def _update(self, request: Any, method: str) -> aiohttp.web.StreamResponse:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return status_response(404, "NotFound",
                                   f"{request.resource.plural} {request.name!r} not found")
        old = self.objects[key].raw
        data = request.data
        if method == "PUT" or isinstance(data, Mapping):
            if not isinstance(data, Mapping):
                return status_response(400, "BadRequest", "the body must be a JSON object")
            wanted = (data.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and str(wanted) != old["metadata"].get("resourceVersion"):
                return status_response(409, "Conflict", f"Operation cannot be fulfilled on "
                                       f"{request.resource.plural} {request.name!r}: the object "
                                       f"has been modified; please apply your changes to the "
                                       f"latest version and try again")
            new = copy.deepcopy(dict(data)) if method == "PUT" else merge_patch(old, data)
        elif isinstance(data, list):
            try:
                new = jsonpatch.apply_patch(copy.deepcopy(old), data)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                status = 409 if isinstance(err, jsonpatch.JsonPatchTestFailed) else 422
                return status_response(status, _REASONS[status], f"json patch: {err}")
        else:
            return status_response(400, "BadRequest", "the body must be a JSON object or a "
                                   "JSON patch")
        raw = await self._store(key, new, old)
        return aiohttp.web.json_response(raw)

    async def _scale(self, request: Any, method: str) -> aiohttp.web.StreamResponse:
        key = (DEPLOYMENTS, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return status_response(404, "NotFound", f"deployments.apps {request.name!r} not "
                                   f"found")
        deployment = self.objects[key].raw
        scale = scale_of(deployment)
        if method in ("PATCH", "PUT"):
            data = request.data
            if isinstance(data, Mapping):
                wanted = (data.get("metadata") or {}).get("resourceVersion")
                if wanted is not None and str(wanted) != scale["metadata"]["resourceVersion"]:
                    return status_response(409, "Conflict", "the object has been modified")
                new_scale = dict(data) if method == "PUT" else merge_patch(scale, data)
            elif isinstance(data, list) and method == "PATCH":
                try:
                    new_scale = jsonpatch.apply_patch(copy.deepcopy(scale), data)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                    return status_response(422, "Invalid", f"json patch: {err}")
            else:
                return status_response(400, "BadRequest", "the body must be a Scale")
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                return status_response(422, "Invalid", f"spec.replicas: Invalid value: "
                                       f"{replicas!r}: must be a non-negative integer")
            body = copy.deepcopy(deployment)
            body["spec"]["replicas"] = replicas
            deployment = await self._store(key, body, deployment)
            scale = scale_of(deployment)
        elif method != "GET":
            return status_response(405, "MethodNotAllowed", f"{method} on deployments/scale")
        return aiohttp.web.json_response(scale)

    # ------------------------------------------------------------------ reads
    def _kind(self, resource: kmock.resource) -> str:
        try:
            info = self.resources[resource]
        except KeyError:
            info = None
        if info is not None and info.kind:
            return str(info.kind)
        return str(resource.plural or "object").capitalize()

    def _selected(self, request: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        label = request.params.get("labelSelector") or ""
        field = request.params.get("fieldSelector") or ""
        return [item for item in items
                if labels_match((item.get("metadata") or {}).get("labels"), label)
                and fields_match(item, field)]

    async def _serve_list(self, request: Any) -> Any:
        payload: Any = await super()._serve_list(request)
        try:
            items = self._selected(request, list(payload["items"]))
        except SelectorError as err:
            return status_response(400, "BadRequest", str(err))
        kind = self._kind(request.resource)
        if wants_table(request.headers.get("Accept", "")):
            return as_table(kind, items, resource_version=self.current_version,
                            include_object=request.params.get("includeObject", "Metadata"))
        group, version = request.resource.group, request.resource.version
        return {"apiVersion": f"{group}/{version}" if group else version,
                "kind": f"{kind}List", "metadata": {"resourceVersion": self.current_version},
                "items": items}

    async def _serve_fetch(self, request: Any) -> Any:
        obj: Any = await super()._serve_fetch(request)
        if wants_table(request.headers.get("Accept", "")):
            return as_table(self._kind(request.resource), [obj],
                            resource_version=self.current_version,
                            include_object=request.params.get("includeObject", "Metadata"))
        return obj

    async def _serve_version(self, request: Any) -> Any:
        payload: Any = await super()._serve_version(request)
        if str(payload.get("groupVersion", "")).startswith("/"):  # the core group is "v1"
            payload["groupVersion"] = payload["groupVersion"][1:]
        for entry in payload.get("resources", []):
            if "/" in entry["name"]:  # subresources have no short names or categories
                entry["shortNames"], entry["categories"] = [], []
                if entry["name"] == "deployments/scale":
                    entry.update(group="autoscaling", version="v1", kind="Scale",
                                 verbs=["get", "patch", "update"])
                else:
                    entry["verbs"] = ["get", "patch", "update"]
        return payload

    async def _watch(self, request: Any) -> aiohttp.web.StreamResponse:
        """``?watch=true``: existing objects as ADDED (unless a ``resourceVersion`` other than
        0 is given), then every change, one JSON event per line, until the client goes away or
        ``timeoutSeconds`` pass."""
        bus = self._buses[request.resource]
        mark = await bus.mark()
        label = request.params.get("labelSelector") or ""
        field = request.params.get("fieldSelector") or ""
        table = wants_table(request.headers.get("Accept", ""))
        include = request.params.get("includeObject", "Metadata")
        namespace, name = request.namespace, request.name
        response = aiohttp.web.StreamResponse(
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
        await response.prepare(request._raw_request)
        headers_sent = [False]

        def wanted(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            try:
                return ((namespace is None or meta.get("namespace") == namespace)
                        and (name is None or meta.get("name") == name)
                        and labels_match(meta.get("labels"), label)
                        and fields_match(obj, field))
            except SelectorError:
                return False

        async def send(kind: str, obj: Mapping[str, Any]) -> None:
            body: Mapping[str, Any] = obj
            if table:
                body = as_table(str(obj.get("kind") or self._kind(request.resource)), [obj],
                                resource_version=str((obj.get("metadata") or {}).get(
                                    "resourceVersion", self.current_version)),
                                include_object=include, headers=not headers_sent[0])
                headers_sent[0] = True
            await response.write(json.dumps({"type": kind, "object": body}).encode() + b"\n")

        async def stream() -> None:
            since = str(request.params.get("resourceVersion") or "")
            if since in ("", "0"):
                for obj in self.objects_of(request.resource, namespace):
                    if wanted(obj):
                        await send("ADDED", obj)
            async for event in bus.stream(since=mark):
                obj = event.get("object") or {}
                if wanted(obj):
                    await send(str(event.get("type")), obj)

        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        try:
            await asyncio.wait_for(stream(), timeout)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            await bus.unmark(mark)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


def scale_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale of a Deployment."""
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                         "resourceVersion": meta.get("resourceVersion", "1"),
                         "uid": meta.get("uid", ""),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}
