"""Real processes for the end-to-end tests: the twin, controllers and Prometheus.

Each runs as a subprocess (its own session, so it can be killed with its children) with its
output in a log file; :meth:`Proc.report` gives the log's tail for failure messages and fixture
teardown prints it (pytest shows it only when a test fails). Everything waits with
:func:`wait_until` (a deadline and a short poll interval), never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rlscale.twin.localplane import LocalPlane

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
STEP_SCENARIO = ROOT / "tests" / "data" / "twin-step.yaml"
BUNDLE = ROOT / "rlscale" / "policies" / "hetero-3pool-ppo"
POOLS = ("llama3-8b-h100", "llama3-8b-a100", "llama3-8b-l4")
LIMITS = {"llama3-8b-h100": (0, 4), "llama3-8b-a100": (1, 8), "llama3-8b-l4": (0, 16)}
"""min and max replicas of each pool in the scenario and the controller configs."""
TEST_MANAGER = "e2e-test"
"""The fieldManager of the tests' own writes (the controller's is rlscale-controller)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(check: Callable[[], T], timeout_s: float, what: str, *,
               interval_s: float = 0.1, report: Callable[[], str] | None = None) -> T:
    """Poll ``check`` until it returns something truthy (returned) or ``timeout_s`` passes
    (AssertionError naming ``what``, the last exception and ``report()``)."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # an endpoint not up yet, a parse error: retry until deadline
            last = err
        if time.monotonic() > deadline:
            extra = f"\n{report()}" if report is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}"
                                 f"{f' (last error: {last!r})' if last else ''}{extra}")
        time.sleep(interval_s)


def http_json(url: str, method: str = "GET", body: Any = None,
              headers: dict[str, str] | None = None, timeout_s: float = 5.0) -> Any:
    """A JSON request without proxies; raises ``urllib.error.HTTPError`` on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout_s) as response:
        return json.loads(response.read().decode() or "null")


def http_text(url: str, timeout_s: float = 5.0) -> str:
    """GET ``url`` as text without proxies."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout_s) as response:
        text: str = response.read().decode()
    return text


class Proc:
    """A subprocess with its output (stdout and stderr) in ``log``."""

    def __init__(self, name: str, args: Sequence[str], log: Path) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=ROOT,
                                          start_new_session=True,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def text(self) -> str:
        """The whole log."""
        return self.log.read_text(errors="replace")

    def report(self, lines: int = 60) -> str:
        """The log's tail, for failure messages."""
        tail = self.text().splitlines()[-lines:]
        state = "running" if self.alive else f"exited with {self.popen.returncode}"
        return f"----- {self.name} ({state}), last {len(tail)} lines of {self.log}:\n" + (
            "\n".join(tail))

    def kill(self) -> None:
        """SIGKILL the process and its children."""
        if self.alive:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit code."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.popen.returncode)


# ---------------------------------------------------------------------------------- twin
class TwinProc(Proc):
    """``python -m rlscale.twin`` on the test scenario, with its files in ``folder``: serving
    its own Kubernetes API, or attached to ``plane``'s (``--kubeconfig``; the pools in
    ``namespace``, the HTTPRoute ``route``, the Lease in ``lease_namespace``)."""

    def __init__(self, folder: Path, *, speed: float = 60.0, duration_s: float = 36_000.0,
                 scenario: Path = STEP_SCENARIO, extra: Sequence[str] = (),
                 plane: LocalPlane | None = None, namespace: str = "llm",
                 route: str = "vllm", lease_namespace: str | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.plane = plane
        self.namespace = namespace
        self.lease_namespace = lease_namespace or namespace
        self.kubeconfig = plane.admin_kubeconfig if plane else folder / "twin.kubeconfig"
        self.config_path = folder / "twin-controller.yaml"
        self.sd_path = folder / "targets.json"
        self.speed = speed
        port = free_port() if plane else 0
        attach = ["--kubeconfig", str(plane.admin_kubeconfig)] if plane else [
            "--kubeconfig-out", str(self.kubeconfig)]
        super().__init__("twin", [
            sys.executable, "-m", "rlscale.twin", "--scenario", str(scenario),
            "--speed", str(speed), "--duration", str(duration_s), "--port", str(port),
            "--namespace", namespace, "--route", route, *attach,
            "--controller-config-out", str(self.config_path),
            "--prometheus-sd", str(self.sd_path), "--status-every", "2", "--tick", "0.1",
            *extra], folder / "twin.log")
        wait_until(lambda: self.config_path.exists() or not self.alive, 60,
                   "the twin to start", report=self.report)
        assert self.alive, self.report()
        server = yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        self.url: str = f"http://127.0.0.1:{port}" if plane else server
        config = yaml.safe_load(self.config_path.read_text())
        self.deployments: dict[str, str] = {p["name"]: p["deployment"] for p in config["pools"]}
        self.route_name: str = config["httproute"]["name"]
        self.backends: dict[str, str] = config["httproute"]["backends"]
        """Service (backendRef) -> pool."""
        wait_until(lambda: self.status(), 30, "the twin's status endpoint", report=self.report)

    # ---- the twin's own endpoints
    def status(self, since_s: float | None = None) -> dict[str, Any]:
        """``GET /twin/status``."""
        query = "" if since_s is None else f"?since={since_s}"
        result: dict[str, Any] = http_json(f"{self.url}/twin/status{query}")
        return result

    def faults(self, body: dict[str, Any]) -> Any:
        """``POST /twin/faults``."""
        return http_json(f"{self.url}/twin/faults", "POST", body)

    # ---- the Kubernetes API
    def api(self, path: str, method: str = "GET", body: Any = None,
            content_type: str = "application/merge-patch+json") -> Any:
        """A request to the Kubernetes API (the twin's, or the plane's as admin)."""
        if self.plane is not None:
            return self.plane.request(path, method, body, content_type=content_type)
        return http_json(f"{self.url}{path}", method, body,
                         headers={"Content-Type": content_type})

    def deployment_path(self, pool: str) -> str:
        """The API path of the pool's Deployment."""
        return (f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
                f"{self.deployments[pool]}")

    def route_path(self) -> str:
        """The API path of the HTTPRoute."""
        return (f"/apis/gateway.networking.k8s.io/v1/namespaces/{self.namespace}/httproutes/"
                f"{self.route_name}")

    def deployment(self, pool: str) -> dict[str, Any]:
        """The pool's Deployment."""
        result: dict[str, Any] = self.api(self.deployment_path(pool))
        return result

    def replicas(self) -> dict[str, int]:
        """Every pool's ``spec.replicas``."""
        return {pool: int(self.deployment(pool)["spec"]["replicas"]) for pool in POOLS}

    def route(self) -> dict[str, Any]:
        """The HTTPRoute."""
        result: dict[str, Any] = self.api(self.route_path())
        return result

    def weights(self) -> dict[str, int]:
        """The HTTPRoute's backendRef weights, by pool."""
        refs = self.route()["spec"]["rules"][0]["backendRefs"]
        return {self.backends[ref["name"]]: int(ref.get("weight", 1)) for ref in refs}

    def scale(self, pool: str, replicas: int) -> None:
        """Scale a pool as someone other than the controller would (``kubectl patch
        deploy``: the Deployment itself, so faults injected on ``deployments/scale`` only hit
        the controller)."""
        self.api(f"{self.deployment_path(pool)}?fieldManager={TEST_MANAGER}", "PATCH",
                 {"spec": {"replicas": replicas}})

    def set_weights(self, weights: dict[str, int]) -> None:
        """Set the HTTPRoute's weights (by pool)."""
        route = self.route()
        for ref in route["spec"]["rules"][0]["backendRefs"]:
            ref["weight"] = weights[self.backends[ref["name"]]]
        self.api(f"{self.route_path()}?fieldManager={TEST_MANAGER}", "PUT", route,
                 "application/json")

    def events(self) -> list[dict[str, Any]]:
        """The Events in the pools' namespace."""
        items: list[dict[str, Any]] = self.api(
            f"/api/v1/namespaces/{self.namespace}/events")["items"]
        return items

    def lease(self, name: str) -> dict[str, Any] | None:
        """A Lease (in the Lease namespace), or None if absent."""
        try:
            result: dict[str, Any] = self.api(
                f"/apis/coordination.k8s.io/v1/namespaces/{self.lease_namespace}/leases/{name}")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise
        return result

    def settled(self, replicas: dict[str, int]) -> bool:
        """Whether every pool has exactly ``replicas`` ready pods and no other pod."""
        pools = self.status()["pools"]
        return all(pools[p]["desired"] == n and pools[p]["ready"] == n and not (
            pools[p]["starting"] or pools[p]["pending"] or pools[p]["draining"])
            for p, n in replicas.items())

    def reset(self, replicas: dict[str, int], weights: dict[str, int] | None = None,
              timeout_s: float = 30.0) -> None:
        """Clear injected faults, bring the pools to ``replicas`` (and the route to
        ``weights``) and wait until every pod is ready and no pod is left draining."""
        self.faults({"clear": True})
        for pool, count in replicas.items():
            self.scale(pool, count)
        if weights is not None:
            self.set_weights(weights)
        wait_until(lambda: self.settled(replicas), timeout_s, f"the twin to settle at {replicas}",
                   interval_s=0.2, report=self.report)


# ---------------------------------------------------------------------------------- controller
def controller_config(twin: TwinProc, identity: str, **changes: Any) -> dict[str, Any]:
    """The twin's generated controller config with its own HTTP port, Lease and identity
    (lease 4 s, renew 3 s, retry 0.5 s: roomy on a loaded machine), then ``changes``."""
    config: dict[str, Any] = yaml.safe_load(twin.config_path.read_text())
    config["http"] = {"address": "127.0.0.1", "port": free_port()}
    config["leader_election"].update(identity=identity, lease_duration_s=4.0,
                                     renew_deadline_s=3.0, retry_period_s=0.5)
    config.update(changes)
    return config


class ControllerProc(Proc):
    """``python -m rlscale.controller --config ... --kubeconfig ...`` as a real process."""

    def __init__(self, folder: Path, name: str, config: dict[str, Any], kubeconfig: Path,
                 extra: Sequence[str] = ()) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.config = config
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = int(config["http"]["port"])
        super().__init__(name, [sys.executable, "-m", "rlscale.controller", "--config",
                                str(path), "--kubeconfig", str(kubeconfig), *extra],
                         folder / f"{name}.log")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The controller's own ``/metrics``: ``{(sample name, sorted labels): value}``."""
        from prometheus_client.parser import text_string_to_metric_families

        text = http_text(f"http://127.0.0.1:{self.port}/metrics", timeout_s=2.0)
        return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
                for family in text_string_to_metric_families(text) for s in family.samples}

    def total(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels``."""
        return sum(value for (sample, have), value in self.metrics().items()
                   if sample == name and set(labels.items()) <= set(have))

    def decisions(self) -> list[dict[str, Any]]:
        """The decision records logged so far (one JSON line each)."""
        out = []
        for line in self.text().splitlines():
            if '"event": "decision"' in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def ready(self) -> bool:
        """Whether ``/healthz`` answers."""
        try:
            return http_text(f"http://127.0.0.1:{self.port}/healthz", 1.0).strip() == "ok"
        except (OSError, urllib.error.URLError):
            return False


def start_controller(started: list[ControllerProc], tmp_path: Path, name: str,
                     config: dict[str, Any], kubeconfig: Path) -> ControllerProc:
    """Start controller ``name`` on ``kubeconfig`` and wait until it serves; it joins
    ``started`` (for :func:`stop_controllers` at teardown)."""
    proc = ControllerProc(tmp_path, name, config, kubeconfig)
    started.append(proc)
    wait_until(lambda: proc.ready() or not proc.alive, 60, f"controller {name} to serve",
               report=proc.report)
    assert proc.alive, proc.report()
    return proc


def stop_controllers(started: list[ControllerProc]) -> None:
    """Stop every controller started, printing each log's tail (shown on failure)."""
    for proc in started:
        proc.stop(timeout_s=5)
        print(proc.report(40))


def leader_and_follower(twin: Any, procs: dict[str, ControllerProc], lease: str,
                        pool: str) -> tuple[ControllerProc, ControllerProc]:
    """Two controllers (``ctl-a``, ``ctl-b``) on the Lease ``lease``: waits for its holder,
    the holder's scale-up of ``pool`` to 2 and three decisions of the other; checks each
    one's ``rlscale_is_leader``. Returns (leader, follower)."""
    holder = wait_until(lambda: (twin.lease(lease) or {}).get("spec", {}).get(
        "holderIdentity"), 20, "a Lease holder")
    wait_until(lambda: twin.replicas()[pool] == 2, 20, f"the leader to scale {pool} to 2",
               report=procs[holder].report)
    leader, follower = procs[holder], procs["ctl-b" if holder == "ctl-a" else "ctl-a"]
    wait_until(lambda: len(follower.decisions()) >= 3, 20, "the follower to decide",
               report=follower.report)
    assert leader.total("rlscale_is_leader") == 1
    assert follower.total("rlscale_is_leader") == 0
    return leader, follower


def alive_without_traceback(proc: ControllerProc) -> None:
    """The controller still runs and never logged a traceback."""
    assert proc.alive, proc.report()
    assert "Traceback" not in proc.text(), proc.report(200)


def event_time(event: dict[str, Any]) -> float:
    """An Event's creation time (its name ends in hex nanoseconds, as client-go names it)."""
    return int(event["metadata"]["name"].rsplit(".", 1)[1], 16) / 1e9


def controller_writes(twin: TwinProc, since_s: float) -> list[dict[str, Any]]:
    """Deployment and HTTPRoute writes since ``since_s`` by anyone but the tests."""
    return [w for w in twin.status(since_s)["writes"]
            if w["resource"] in ("deployments/scale", "deployments", "httproutes")
            and w["field_manager"] != TEST_MANAGER]


def assert_within_limits(twin: TwinProc, since_s: float = 0.0) -> None:
    """No successful controller write ever set a pool outside its min/max replicas."""
    bad = [w for w in controller_writes(twin, since_s) if w["replicas"] is not None
           and not LIMITS[w["name"]][0] <= w["replicas"] <= LIMITS[w["name"]][1]]
    assert not bad, f"writes outside [min, max] replicas: {bad}"


# ---------------------------------------------------------------------------------- Prometheus
def prometheus_binary() -> str | None:
    """The ``prometheus`` executable, if installed."""
    return shutil.which("prometheus")


class PrometheusProc(Proc):
    """A Prometheus server scraping the twin's pods (file_sd) every second."""

    def __init__(self, folder: Path, targets: Path, binary: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "800ms",
                             "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "vllm", "file_sd_configs": [
                      {"files": [str(targets)], "refresh_interval": "1s"}]}]}
        path = folder / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        super().__init__("prometheus", [
            binary, f"--config.file={path}", f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            folder / "prometheus.log")
        wait_until(self.ready, 60, "Prometheus to be ready", interval_s=0.2,
                   report=self.report)

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200."""
        try:
            http_text(f"{self.url}/-/ready", 1.0)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        result: list[dict[str, Any]] = http_json(url)["data"]["result"]
        return result
