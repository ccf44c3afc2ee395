"""Routing weights: the one conversion from weights to traffic shares, and to integers.

A pool's routing weight is a non-negative number (the policy's level / (L-1), an HTTPRoute
``backendRefs[].weight``); what matters is the *share* of new requests each pool receives.
The simulator's router, the observation's routing-share feature, the controller's decision
record and the HTTPRoute writer all use these two functions, so they agree on what a set of
weights means. Imports nothing but the standard library (the controller and the simulator
both use it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal


def traffic_shares(weights: Sequence[float], eligible: Sequence[bool] | None = None, *,
                   if_none: Literal["zeros", "equal"] = "zeros") -> list[float]:
    """Each entry's share of traffic (fractions summing to 1).

    Only entries that are ``eligible`` (default: all; the router passes "has a ready replica")
    and have a positive weight receive traffic, in proportion to their weights. When no entry
    qualifies the result is all zeros (``if_none="zeros"``: no pool can take traffic) or equal
    shares over all entries (``if_none="equal"``: what a gateway does with all-zero weights
    in a record of intent).
    """
    ok = [True] * len(weights) if eligible is None else [bool(e) for e in eligible]
    if len(ok) != len(weights):
        raise ValueError(f"{len(weights)} weights but {len(ok)} eligibility flags")
    total = 0.0  # summed in order, as the router always has: shares are bit-for-bit stable
    for weight, allowed in zip(weights, ok, strict=True):
        if allowed and weight > 0:
            total += weight
    if total <= 0:
        fill = 1.0 / len(weights) if if_none == "equal" and weights else 0.0
        return [fill] * len(weights)
    return [w / total if e and w > 0 else 0.0 for w, e in zip(weights, ok, strict=True)]


def integer_weights(shares: Sequence[float], total: int) -> list[int]:
    """Non-negative ``shares`` as integers summing to ``total`` (largest remainder; ties to the
    earlier entry), as an HTTPRoute's integer ``backendRefs[].weight`` wants them. All-zero
    shares give all zeros; a negative or non-finite share is a ``ValueError``."""
    if any(not (s >= 0 and math.isfinite(s)) for s in shares):
        raise ValueError(f"weights must be finite and >= 0, got {list(shares)}")
    whole = sum(shares)
    if whole <= 0:
        return [0] * len(shares)
    exact = [s / whole * total for s in shares]
    out = [math.floor(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[:total - sum(out)]:
        out[i] += 1
    return out
