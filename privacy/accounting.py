"""Conversions between privacy models, computed by OpenDP's own maps."""

from __future__ import annotations

import math
from functools import lru_cache

import opendp.prelude as dp

dp.enable_features("contrib")


@lru_cache(maxsize=4096)
def zcdp_to_epsilon_delta(rho: float, delta: float) -> float:
    """The ε such that ρ-zCDP implies (ε, δ)-DP, by OpenDP's zCDP→approx-DP conversion.

    Built on a Gaussian mechanism of sensitivity 1 whose privacy map is exactly
    ρ; OpenDP's privacy profile then gives the smallest ε at ``delta``.
    """
    if not (rho > 0 and math.isfinite(rho)) or not 0 < delta < 1:
        raise ValueError("rho must be positive and finite, delta in (0, 1)")
    scale = 1.0 / math.sqrt(2.0 * rho)
    gaussian = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False),
                                  dp.absolute_distance(T=float), scale)
    profile = dp.c.make_zCDP_to_approxDP(gaussian).map(1.0)
    return float(profile.epsilon(delta))
