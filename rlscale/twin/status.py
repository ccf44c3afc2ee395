"""What the twin reports about itself: SLO attainment so far and the one-line status.

The status line, printed every few wall seconds::

    [00:12:30 x60.0] llama3-8b-h100 2/3  llama3-8b-a100 3/3  llama3-8b-l4 0/0 | weights
    50/50/0 % | 24.3 req/s | SLO 97.2 % of 12,345 | lag 0.0 s

holds the simulated time (h:m:s) and speed, per pool ready/desired replicas, the routing
weights in force (percent), the arrival rate since the last line (simulated requests per
simulated second), the share of ended requests that met both the TTFT and inter-token SLO (a
failed request misses it), and how far the simulator trails the wall clock × speed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlscale.sim.cluster import Cluster
from rlscale.sim.pod import PodPhase
from rlscale.sim.spec import SLO


@dataclass
class SloTally:
    """Counts the ended requests that met the SLO, reading the request log incrementally."""

    slo: SLO
    ended: int = 0
    met: int = 0
    failed: int = 0

    def update(self, cluster: Cluster) -> None:
        """Count the requests that ended since the last call."""
        log = cluster.log
        ttft, itl = log.columns["ttft_s"], log.columns["itl_s"]
        failure = log.int_columns["failure"]
        for i in range(self.ended, len(failure)):
            if failure[i]:
                self.failed += 1
            elif ttft[i] <= self.slo.ttft_s and itl[i] <= self.slo.itl_s:
                self.met += 1
        self.ended = len(failure)

    @property
    def attainment(self) -> float | None:
        """Share of ended requests within the SLO (None before any ended)."""
        return self.met / self.ended if self.ended else None


def clock(seconds: float) -> str:
    """Simulated seconds as ``h:mm:ss``."""
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def pool_counts(cluster: Cluster) -> dict[str, dict[str, int]]:
    """Per pool: desired replicas and pods ready, starting, pending, draining."""
    out = {}
    for index, spec in enumerate(cluster.pools):
        out[spec.name] = {
            "desired": cluster.desired[index],
            "ready": cluster.pods_in(index, PodPhase.READY),
            "starting": cluster.pods_in(index, PodPhase.STARTING),
            "pending": cluster.pods_in(index, PodPhase.PENDING),
            "draining": cluster.pods_in(index, PodPhase.DRAINING),
        }
    return out


def status_line(cluster: Cluster, *, speed: float, weights: dict[str, float],
                arrival_rps: float, tally: SloTally, lag_s: float) -> str:
    """The one-line status (see the module docstring)."""
    counts = pool_counts(cluster)
    pools = "  ".join(f"{name} {c['ready']}/{c['desired']}" for name, c in counts.items())
    total = sum(weights.values())
    shares = "/".join(f"{100 * weights.get(n, 0) / total:.0f}" if total > 0 else "-"
                      for n in counts)
    slo = ("SLO -" if tally.attainment is None else
           f"SLO {100 * tally.attainment:.1f} % of {tally.ended:,}")
    return (f"[{clock(cluster.now_s)} x{speed:g}] {pools} | weights {shares} % | "
            f"{arrival_rps:.1f} req/s | {slo} | lag {lag_s:.1f} s")
