"""Conversions between privacy models, computed by OpenDP's own maps."""

from __future__ import annotations

import math
from functools import lru_cache

import opendp.prelude as dp

from privacy.amount import PrivacyAmount

dp.enable_features("contrib")


def bun_steinke_epsilon(rho: float, delta: float) -> float:
    """ε = ρ + 2·√(ρ·ln(1/δ)): ρ-zCDP implies (ε, δ)-DP (Bun & Steinke 2016, Prop. 1.3).

    A valid, slightly looser bound than OpenDP's optimal conversion; used only
    where OpenDP's own computation overflows (ρ of about 1e5 and more).
    """
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def epsilon_delta_of(cost: PrivacyAmount, delta: float) -> tuple[float, float] | None:
    """The (ε, δ)-DP that ``cost`` implies at ``delta``: None for a pure cost (ε is itself
    the guarantee), else :func:`zcdp_to_epsilon_delta` of the debited ρ. The one place a
    plan's ``epsilon_delta`` comes from."""
    if cost.model != "zcdp":
        return None
    return zcdp_to_epsilon_delta(float(cost.value), delta), delta


@lru_cache(maxsize=4096)
def zcdp_to_epsilon_delta(rho: float, delta: float) -> float:
    """The ε such that ρ-zCDP implies (ε, δ)-DP, by OpenDP's zCDP→approx-DP conversion.

    Built on a Gaussian mechanism of sensitivity 1 whose privacy map is exactly
    ρ; OpenDP's privacy profile then gives the smallest ε at ``delta``. For very
    large ρ (where the profile overflows a float, from about ρ = 1e5) it is the
    closed-form bound of Bun & Steinke instead, which is never smaller: the ε
    shown is always one that the cost implies. Only displayed, never charged.
    """
    if not (rho > 0 and math.isfinite(rho)) or not 0 < delta < 1:
        raise ValueError("rho must be positive and finite, delta in (0, 1)")
    scale = 1.0 / math.sqrt(2.0 * rho)
    gaussian = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale
    )
    profile = dp.c.make_zCDP_to_approxDP(gaussian).map(1.0)
    try:
        return float(profile.epsilon(delta))
    except dp.OpenDPException as exc:
        if exc.variant != "Overflow":
            raise
        return bun_steinke_epsilon(rho, delta)
