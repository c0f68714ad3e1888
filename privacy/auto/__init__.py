"""Automatic contribution and clamping bounds: a small DP release picks them, then the statistic.

A query may leave ``max_partitions_contributed`` (k), ``max_contributions_per_partition``
(c) and, for sum/mean/quantile, the clamping ``bounds`` to Ruis (``"auto"``).
Fixed bounds trade truncation/clamping bias against noise blindly: on
mobility data a fixed k = 3 loses most visitors of busy municipalities, while
a k far above what devices do multiplies the noise. Here a share ``s`` of the
query's cost (default 10%) buys DP estimates of how units contribute, and the
rest pays for the statistic at the bounds those estimates favour.

**What is released to choose** (all noise and all losses come from OpenDP):

1. *Contribution bounds* (k and/or c). A per-unit profile
   (:func:`privacy.truncation.unit_profile`): one row per unit with its number
   of distinct groups ``g`` (after the ``where`` filters, clipped to the
   largest candidate for k; when k is fixed, of the groups kept at that k) and
   its number of rows ``n`` in one of those groups, chosen by a fixed hash
   (without grouping: all its rows), clipped to the largest candidate for c.
   OpenDP releases a histogram of ``(g, n)`` over the public product of
   1..limit (``dp.len()`` grouped with public keys; one row per unit). Only
   the dimensions the choice needs are present (``g`` alone for ``unit_count``).
2. *Clamping bounds*. Candidates are nested intervals inside the column's
   public bounds with geometrically shrinking widths
   (:class:`~privacy.candidates.ClampCandidates`). After truncation at the
   chosen (k, c), each row's distance ``y`` from the candidates' fixed end
   (``x − L``, ``U − x`` or ``|x|``) is binned at the candidate widths and
   OpenDP releases the histogram of bins; a unit has at most ``k·c`` rows there.

**The choosing rule** minimises an estimate of the mean absolute error per
released cell, bias plus noise, and is pure post-processing of the releases
above and of public facts (candidates, OpenDP's noise scales):

- for (k, c): ``E|noise_{k,c}| + (kept_max − kept(k, c)) / cells`` with
  ``kept(k, c) = Σ_{g,n} h(g, n) · min(g, k) · min(n, c)`` (``min(n, c)`` is 1
  for ``unit_count``) — the rows (units, for ``unit_count``) truncation
  removes, per cell, relative to the largest candidates. For ``unit_count``
  this is exactly ``Σ_{j>k} (j − k) h_j / cells``; for rows it assumes a
  unit's groups are about as full as the sampled one. ``E|noise_{k,c}|`` is the
  expected absolute noise of a count over the same cells at the statistic's
  cost, from OpenDP's privacy map at that (k, c) (for ``count`` and
  ``unit_count`` that *is* the statistic; for sum/mean/quantile the
  contribution bounds are chosen as for counting their rows);
- for clamping a sum or mean: ``E|noise_w| + Σ_b h_b · max(0, mid_b − w) / cells``
  where ``mid_b`` is the middle of bin ``b`` and ``E|noise_w|`` the expected
  absolute noise of the sum clamped to candidate ``w`` at the chosen (k, c)
  (a mean divides both terms by about the same row count);
- for clamping a quantile: the clamp costs accuracy only through the distance
  of the quantile outside it and through the spacing of the 128 candidates
  OpenDP chooses among; the rule estimates the quantile from the noisy
  cumulative histogram (raised by two standard deviations of its noise, so the
  clamp covers it with high probability) and minimises
  ``max(0, Q̂ − w) + spacing_w / 2``.

What a candidate drops is read from the noisy histogram as a linear estimate
over the bins that stand out of the noise — up to the last bin that does alone
or as the start of 4 consecutive bins (:func:`~privacy.auto.histogram.visible_box`)
— plus one standard deviation of that estimate's noise
(:func:`~privacy.auto.histogram.dropped_upper`): where the histogram cannot tell,
the rule assumes data is dropped rather than not, so noise-dominated histograms
no longer make the smallest candidates look free. Profile values above 16 are
binned geometrically (:class:`~privacy.auto.contribution.ValueBins`). A mean's
clamp must hold the estimated 95 % of the rows; where the histogram's noise is too
large to estimate that (the level plus its noise margin reaches 1), it is the widest
candidate, the declared bounds. Bias in a tail too thin to stand
out of the noise stays invisible to the rule; the release's own accuracy accounts
for bias through :mod:`privacy.kept`.

**Privacy argument.** Let ``F`` be the row-wise filters, ``P`` the per-unit
profile and ``T_{k,c}`` the per-unit truncation (see :mod:`privacy.truncation`
for why both keep neighbouring datasets neighbours within the stated bounds).
The query runs, in sequence: ``M_1 = H_1 ∘ P ∘ F`` (the contribution
histogram; OpenDP's map at one row per unit is ≤ ``ε_1``), then with
``(k, c) = choose(M_1's output)`` the clamp histogram
``M_2 = H_2 ∘ bin ∘ T_{k,c} ∘ F`` (``bin`` is row-wise; OpenDP's map at ``k·c``
rows per unit is ≤ ``ε_2`` for every (k, c), because its noise is calibrated
per (k, c) to that target), then with ``w = choose(M_2's output)`` the
statistic ``M_3 = M_{k,c,w} ∘ T_{k,c} ∘ F`` whose OpenDP map at
``Bound(by=group_by, per_group=c, num_groups=k)`` is ≤ ``ε_3`` for every
candidate (it is compiled at that cost for whichever candidate is chosen).
With ``contribution_bounds_per`` (D public key combinations of those columns
that the filters let through) the same holds with ``P`` giving one row per unit
and value of those columns (``H_1``'s map taken at D rows per unit), ``k·c·D``
rows per unit for ``H_2``, and the statistic's ``d_in`` of
:func:`privacy.measurement.contribution_bounds`. Each step is ε_i-DP
(ρ_i-zCDP) whatever the earlier outputs were, so by adaptive sequential
composition the whole release is (ε_1 + ε_2 + ε_3)-DP
(under zCDP, (ρ_1 + ρ_2 + ρ_3)-zCDP). The costs are split exactly:
``ε_1 + ε_2 = floor(s · ε)`` (to 12 decimals) and ``ε_3 = ε − ε_1 − ε_2``, and
before the statistic is released the sum of the three OpenDP maps is checked
(in exact decimals) to be at most ``ε``. Choosing the bounds and the layout of
rows are post-processing. Nothing about the candidates is read from the data.

**Interface.** :func:`compile_auto` plans such a query (the exact cost split,
the selection measurements, the statistic at the largest candidates; public
metadata only) into a plan carrying an :class:`AutoPlan`; :func:`run_selection`
runs the selection on the masked frame at release and returns the
:class:`Selection` (bounds chosen, the truncated frame, the losses and the
record). Inside: :mod:`~privacy.auto.planning` and
:mod:`~privacy.auto.selection` behind them, :mod:`~privacy.auto.contribution`
(step 1), :mod:`~privacy.auto.clamp` (step 2), :mod:`~privacy.auto.histogram`
(the DP histograms both release) and :mod:`~privacy.auto.noise` (noise facts
for the rule).
"""

from __future__ import annotations

from privacy.auto.planning import AutoPlan, CompileFixed, compile_auto
from privacy.auto.selection import Selection, run_selection
from privacy.results import NOISE_ONLY

__all__ = ["NOISE_ONLY", "AutoPlan", "CompileFixed", "Selection", "compile_auto", "run_selection"]
