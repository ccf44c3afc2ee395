"""A local Kubernetes control plane on loopback: etcd, kube-apiserver and
kube-controller-manager, run from the binary ``tools/kube/build.sh`` builds from the published
Go modules (one executable, ``kube``, holding all three and kubectl).

What runs, and what does not:

* **etcd** (embedded etcd server, data in the work directory, no fsync);
* **kube-apiserver** on ``https://127.0.0.1:PORT`` with a self-signed serving certificate (its
  own ``--cert-dir``), RBAC authorization, an admin token (group ``system:masters``, the only
  static credential) and ServiceAccount tokens signed by a key made at start
  (``kube keygen``); tokens for a ServiceAccount come from the TokenRequest API;
* **kube-controller-manager** with the controllers a Deployment needs (Deployment, ReplicaSet,
  garbage collector, ServiceAccount, namespace) and the HorizontalPodAutoscaler controller;
* no scheduler and no kubelet: a Pod stays unbound until someone binds it (``rlscale twin
  --kubeconfig`` does, as KWOK does).

``python -m rlscale.twin.localplane --dir DIR`` runs it until SIGINT or SIGTERM and prints the
admin kubeconfig's path; :class:`LocalPlane` is the same from Python (the tests' fixture).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tools" / "kube" / "build.sh"
CONTROLLERS = ("deployment-controller", "replicaset-controller", "garbage-collector-controller",
               "serviceaccount-controller", "namespace-controller",
               "horizontal-pod-autoscaler-controller")
"""The kube-controller-manager controllers that run (``--controllers``)."""
HPA_SYNC_S = 5
"""How often the HPA controller reconciles (seconds; upstream's default is 15)."""
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT_S = 180.0
"""How long the API server may take to turn ready (a loaded 2-core machine: ~20-60 s)."""


class PlaneError(RuntimeError):
    """The control plane is not built or cannot start; the message says what to do."""


def built_dir(build_script: Path = BUILD_SCRIPT) -> Path | None:
    """The directory holding the built ``kube`` binary and ``httproutes.yaml`` for the pinned
    versions (``build.sh --cached``), or None when it has not been built."""
    if not build_script.exists():
        return None
    result = subprocess.run(["bash", str(build_script), "--cached"], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        return None
    lines = result.stdout.strip().splitlines()
    return Path(lines[-1]) if lines else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def kubeconfig(server: str, token: str, ca_file: Path, name: str,
               namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig for ``server`` (HTTPS, trusting ``ca_file``) with a bearer ``token``."""
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "local", "cluster": {
                "server": server, "certificate-authority": str(ca_file)}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "local", "user": name,
                                                    "namespace": namespace}}],
            "current-context": name}


class _Process:
    """A component's process, its output in ``DIR/<name>.log``."""

    def __init__(self, name: str, args: Sequence[str], folder: Path) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        out: IO[bytes]
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        state = "running" if self.alive else f"exited with {self.popen.returncode}"
        return f"----- {self.name} ({state}), {self.log}:\n" + "\n".join(text)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


class LocalPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``folder`` (module docstring).

    Args:
        binary_dir: where ``build.sh`` put ``kube`` (see :func:`built_dir`).
        folder: a fresh work directory (data, certificates, logs, kubeconfigs).
    """

    def __init__(self, binary_dir: Path, folder: Path) -> None:
        self.kube = binary_dir / "kube"
        self.httproute_crd = binary_dir / "httproutes.yaml"
        if not os.access(self.kube, os.X_OK):
            raise PlaneError(f"no control plane binary at {self.kube}: run "
                             f"`bash tools/kube/build.sh` first")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.ca_file = folder / "certs" / "apiserver.crt"
        self.admin_token = secrets.token_hex(24)
        self.admin_kubeconfig = folder / "admin.kubeconfig"
        self.processes: list[_Process] = []

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        """Start the three components and wait until the API server is ready and the
        ``default`` ServiceAccount exists (the controller manager works).

        Raises:
            PlaneError: a component exited or did not turn ready in time (with its log).
        """
        folder = self.folder
        key = folder / "sa.key"
        subprocess.run([str(self.kube), "keygen", str(key)], check=True)
        tokens = folder / "tokens.csv"
        tokens.write_text(f'{self.admin_token},rlscale-admin,rlscale-admin,"system:masters"\n')
        tokens.chmod(0o600)
        etcd_port, peer_port = free_port(), free_port()
        self._run("etcd", "etcd", f"--data-dir={folder / 'etcd'}",
                  f"--listen-client-url=http://127.0.0.1:{etcd_port}",
                  f"--listen-peer-url=http://127.0.0.1:{peer_port}")
        self._run("kube-apiserver", "kube-apiserver",
                  f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                  "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                  f"--secure-port={self.port}", f"--cert-dir={folder / 'certs'}",
                  f"--token-auth-file={tokens}", "--authorization-mode=RBAC",
                  f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                  f"--service-account-key-file={key}",
                  f"--service-account-signing-key-file={key}",
                  "--service-cluster-ip-range=10.96.0.0/16",
                  "--endpoint-reconciler-type=none", "--profiling=false", "-v=1")
        self._wait_ready()
        self.admin_kubeconfig.write_text(yaml.safe_dump(kubeconfig(
            self.server, self.admin_token, self.ca_file, "rlscale-admin")))
        self._run("kube-controller-manager", "kube-controller-manager",
                  f"--kubeconfig={self.admin_kubeconfig}",
                  f"--authentication-kubeconfig={self.admin_kubeconfig}",
                  f"--authorization-kubeconfig={self.admin_kubeconfig}",
                  f"--controllers={','.join(CONTROLLERS)}", "--leader-elect=false",
                  f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_S}s",
                  "--secure-port=0", "--profiling=false", "-v=1")
        self._wait(lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default"),
                   60.0, "the default ServiceAccount (kube-controller-manager)")

    def stop(self) -> None:
        """Stop every component (controller manager first, etcd last)."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> LocalPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def report(self, lines: int = 30) -> str:
        """The tail of every component's log."""
        return "\n".join(p.tail(lines) for p in self.processes)

    def _run(self, name: str, *args: str) -> None:
        self.processes.append(_Process(name, [str(self.kube), *args], self.folder))

    def _wait(self, check: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        last: BaseException | None = None
        while time.monotonic() < deadline:
            dead = [p for p in self.processes if not p.alive]
            if dead:
                raise PlaneError(f"{dead[0].name} exited while waiting for {what}\n"
                                 f"{self.report()}")
            try:
                if check():
                    return
            except (OSError, ValueError) as err:
                last = err
            time.sleep(0.5)
        raise PlaneError(f"timed out after {timeout_s:g} s waiting for {what} "
                         f"(last error: {last!r})\n{self.report()}")

    def _wait_ready(self) -> None:
        def ready() -> bool:
            return self.ca_file.exists() and self.get("/readyz") == "ok"
        self._wait(ready, START_TIMEOUT_S, "kube-apiserver's /readyz")

    # ------------------------------------------------------------------ requests
    def get(self, path: str, token: str | None = None) -> Any:
        """GET ``path`` from the API server (admin token unless ``token``): JSON decoded, or
        the text when it is not JSON. Raises ``urllib.error.HTTPError`` on 4xx/5xx."""
        return self.request(path, token=token)

    def request(self, path: str, method: str = "GET", body: Any = None, *,
                content_type: str = "application/json", token: str | None = None) -> Any:
        """A request to the API server as admin (or with ``token``), ``body`` sent as JSON:
        the answer JSON decoded, or its text when it is not JSON. Raises
        ``urllib.error.HTTPError`` on 4xx/5xx."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.server}{path}", data=data, method=method,
                                         headers={
            "Authorization": f"Bearer {token or self.admin_token}",
            "Content-Type": content_type})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        with opener.open(request, timeout=10) as response:
            text = response.read().decode()
        try:
            return json.loads(text)
        except ValueError:
            return text

    def kubectl(self, *args: str, kubeconfig_file: Path | None = None,
                stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl (``kube kubectl``) as admin or with ``kubeconfig_file``.

        Raises:
            PlaneError: ``check`` and a non-zero exit (with kubectl's output).
        """
        config = kubeconfig_file or self.admin_kubeconfig
        result = subprocess.run([str(self.kube), "kubectl", f"--kubeconfig={config}", *args],
                                input=stdin, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise PlaneError(f"kubectl {' '.join(args)} exited with {result.returncode}:\n"
                             f"{result.stdout}{result.stderr}")
        return result

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path,
                                   expiration_s: int = 3600) -> Path:
        """Write a kubeconfig holding a token for ServiceAccount ``namespace/name`` from the
        TokenRequest API (``kubectl create token``); returns ``path``."""
        token = self.kubectl("create", "token", name, "-n", namespace,
                             f"--duration={expiration_s}s").stdout.strip()
        path.write_text(yaml.safe_dump(kubeconfig(self.server, token, self.ca_file,
                                                  f"{namespace}-{name}", namespace)))
        return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rlscale.twin.localplane``: run the control plane until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m rlscale.twin.localplane",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, type=Path,
                        help="work directory (data, certificates, logs, admin.kubeconfig)")
    args = parser.parse_args(argv)
    binary_dir = built_dir()
    if binary_dir is None:
        print("rlscale localplane: not built; run `bash tools/kube/build.sh` first",
              file=sys.stderr)
        return 1
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plane = LocalPlane(binary_dir, args.dir)
    try:
        with plane:
            plane.kubectl("apply", "--server-side", "-f", str(plane.httproute_crd))
            print(f"rlscale localplane: API server {plane.server}\n"
                  f"  admin kubeconfig  {plane.admin_kubeconfig}\n"
                  f"  kubectl           {plane.kube} kubectl --kubeconfig "
                  f"{plane.admin_kubeconfig} get nodes\n"
                  f"  logs              {args.dir}/*.log", flush=True)
            while not stop and all(p.alive for p in plane.processes):
                time.sleep(0.5)
    except PlaneError as err:
        print(f"rlscale localplane: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
