"""Synthetic demo data for Ruis: a telecom-style phone-location dataset.

``generate`` writes two parquet files into an output directory:

* ``mobility_events.parquet`` -- one row per observed event of a device:
  ``device_id``, ``day`` (Date), ``ts`` (naive Datetime in microseconds, whole seconds:
  the event's *local* wall-clock time, within ``day``), ``municipality``,
  ``neighbourhood``, ``dwell_minutes``.  There is no stored hour: the registration
  derives ``hour`` and ``weekday`` from ``ts`` (with no ``time_zone``, since ``ts`` is
  already local time; daylight saving gaps are not modelled).
* ``residents.parquet`` -- one row per device with its ``home_municipality`` and
  ``home_neighbourhood``, derived from the events table the way a data owner would
  (the place with the most events over the period), not from the generator's hidden
  home variable.

The output is a pure function of the parameters: the same arguments produce identical
parquet files.  Randomness comes from ``numpy.random.default_rng`` -- this is data
generation, not differential-privacy noise.

Shape of the synthetic world:

* ``N_MUNICIPALITIES`` municipalities with distinct codes ``GM0001``..``GM1999`` drawn
  from the seed, Zipf-like populations (a few big cities, a long tail) and random
  coordinates in the unit square.
* Each municipality has about ten neighbourhoods ``WK<municipality digits><2 digits>``
  with lognormal population weights.
* Each device lives in a municipality (drawn by population) and a neighbourhood in it,
  and has a personal set of 0-7 "other places" chosen with a gravity model
  (population / distance^2, without replacement).  Device types: stay-at-home,
  regular, commuter (one dominant work municipality, mostly on weekdays in daytime)
  and mobile (4-7 other places).
* Per device and day a Poisson(``events_per_day``) number of events (capped at
  ``max_events_per_day``, which makes ``max_rows`` a hard bound); each device gets at
  least one event over the period so that every device has a residence.
* A daily rhythm: each event's hour comes from a profile of where the device is and the
  kind of day (``_HOURS``).  Nights (1-4 h) are quiet; on weekdays commuters are at home
  before about 8 and after about 18 and at work in between, so events peak around the
  commute (7-9 and 16-19 h); weekends start later and are flatter.  The minute and
  second are uniform within the hour.

The municipality/neighbourhood code lists, the neighbourhood -> municipality map and the
day list returned in ``DemoFiles`` are the *public* key lists and hierarchy: they depend
only on the parameters (seed, start, days), never on which codes occur in the events.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

DATA_FORMAT: Final = 2
"""The version of the files' layout (2: ``ts`` instead of a stored ``hour``): part of every
cache key of generated data, so files of an older generator are not reused."""
EVENTS_FILE: Final = "mobility_events.parquet"
RESIDENTS_FILE: Final = "residents.parquet"

N_MUNICIPALITIES: Final = 340
MAX_MUNICIPALITY_CODE: Final = 1999
DWELL_BOUNDS: Final = (0, 240)
MAX_OTHER_PLACES: Final = 7
_SLOTS: Final = MAX_OTHER_PLACES + 1  # slot 0 = home, slots 1.. = other places

# Device types: probability, and (min, max) number of other places.
_TYPE_PROBS: Final = (0.20, 0.55, 0.15, 0.10)  # stay-at-home, regular, commuter, mobile
_TYPE_OTHERS: Final = ((0, 0), (1, 3), (1, 3), (4, MAX_OTHER_PLACES))
_COMMUTER: Final = 2

# Relative hourly activity (events per hour of local time) by where a device is and what
# kind of day it is: weekdays have commuting peaks (about 7-9 and 16-19), nights are quiet,
# weekends start later and are flatter.  One row per profile (see ``_profile``).
_HOURS: Final = (
    # hour:  0     1     2     3     4     5     6     7     8     9    10    11
    #       12    13    14    15    16    17    18    19    20    21    22    23
    # home, weekday: evening heavy, a morning bump before leaving
    (      0.8,  0.3,  0.2,  0.2,  0.3,  0.8,    3,    7,    6,    4,  3.5,  3.5,
             4,  3.5,  3.5,    4,    5,  6.5,    7,  6.5,    6,    5,  3.5,  1.8),
    # away, weekday: daytime, busiest around the commute
    (      0.3,  0.1,  0.1,  0.1, 0.15,  0.5,    2,    7,   10,    7,    6,    6,
             7,    6,    6,    7,    8,   10,    7,    4,    3,    2,    1,  0.5),
    # a commuter at home on a weekday: before and after work
    (      0.8,  0.3,  0.2,  0.2,  0.4,  1.5,    6,   10,    5,    1,  0.5,  0.5,
           0.5,  0.5,  0.5,    1,    2,    6,   10,    8,    6,    5,  3.5,    2),
    # a commuter at work on a weekday: arriving 7-9, leaving 16-18
    (     0.05, 0.02, 0.02, 0.02, 0.05,  0.2,    1,    6,   10,    7,    5,    5,
             6,    5,    5,    6,    9,   10,    5,  1.5,  0.6,  0.3,  0.1, 0.05),
    # home, weekend: a late start, a flat day
    (        2,  1.2,  0.6,  0.4,  0.3,  0.3,  0.6,  1.5,    3,    5,    6,    6,
             6,  5.5,    5,    5,  5.5,    6,    7,  7.5,  7.5,    7,    5,  3.5),
    # away, weekend: late morning to evening
    (        1,  0.6,  0.3,  0.2,  0.1,  0.1,  0.3,  0.8,    2,    4,    6,    7,
             7,    7,    7,    7,    7,    6,    5,    4,    4,  3.5,  2.5,  1.5),
)  # fmt: skip
_HOME, _AWAY, _COMMUTER_HOME, _COMMUTER_WORK, _WEEKEND_HOME, _WEEKEND_AWAY = range(len(_HOURS))
_SECONDS_PER_HOUR: Final = 3600
_US_PER_SECOND: Final = 1_000_000

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo files were written, plus the public metadata to register them."""

    events_path: Path
    residents_path: Path
    n_events: int
    n_devices: int
    municipality_codes: list[str]
    neighbourhood_codes: list[str]
    days: list[date]
    max_events_per_day: int
    neighbourhood_municipality: dict[str, str]
    """The public hierarchy: each neighbourhood code to its municipality's code."""

    @property
    def max_rows(self) -> int:
        """Public hard upper bound on the number of event rows."""
        return self.n_devices * len(self.days) * self.max_events_per_day


@dataclass(frozen=True)
class _Geography:
    mun_codes: list[str]  # sorted
    nb_codes: list[str]  # sorted; grouped by municipality in mun_codes order
    nb_mun: IntArray  # municipality index of each neighbourhood
    nb_offsets: IntArray  # neighbourhoods of municipality m: nb_offsets[m]:nb_offsets[m+1]
    nb_cdf_keys: FloatArray  # nb_mun + within-municipality cumulative weight (see _pick_nb)
    population: FloatArray  # relative municipality populations, sums to 1
    log_gravity: FloatArray  # (M, M) log attraction of j for residents of i; -inf on diagonal


def _max_events_per_day(events_per_day: float) -> int:
    return max(50, math.ceil(5 * events_per_day))


def _build_geography(rng: np.random.Generator) -> _Geography:
    m = N_MUNICIPALITIES
    digits = np.sort(rng.choice(np.arange(1, MAX_MUNICIPALITY_CODE + 1), size=m, replace=False))
    mun_codes = [f"GM{d:04d}" for d in digits]

    # Zipf-like populations, randomly assigned to codes.
    ranks = rng.permutation(m) + 1
    population = ranks.astype(np.float64) ** -1.05
    population /= population.sum()

    xy = rng.random((m, 2))
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2))
    with np.errstate(divide="ignore"):
        log_gravity = np.log(population)[None, :] - 2.0 * np.log(dist + 0.05)
    np.fill_diagonal(log_gravity, -np.inf)

    n_nb = np.clip(rng.poisson(10.0, size=m), 4, 20)
    nb_offsets = np.concatenate(([0], np.cumsum(n_nb))).astype(np.int64)
    nb_mun = np.repeat(np.arange(m, dtype=np.int64), n_nb)
    nb_codes = [f"WK{digits[i]:04d}{j:02d}" for i in range(m) for j in range(int(n_nb[i]))]
    weights = rng.lognormal(0.0, 0.8, size=int(nb_offsets[-1]))
    cum = np.cumsum(weights)
    start_cum = np.concatenate(([0.0], cum))[nb_offsets[:-1]]
    total = cum[nb_offsets[1:] - 1] - start_cum
    within = (cum - start_cum[nb_mun]) / total[nb_mun]
    within[nb_offsets[1:] - 1] = 1.0  # exact upper end of each municipality
    return _Geography(
        mun_codes=mun_codes,
        nb_codes=nb_codes,
        nb_mun=nb_mun,
        nb_offsets=nb_offsets,
        nb_cdf_keys=nb_mun.astype(np.float64) + within,
        population=population,
        log_gravity=log_gravity,
    )


def _neighbourhood_map(geo: _Geography) -> dict[str, str]:
    """Each neighbourhood code to its municipality's code, in code order."""
    return {
        code: geo.mun_codes[int(mun)]
        for code, mun in sorted(zip(geo.nb_codes, geo.nb_mun, strict=True))
    }


def _pick_nb(geo: _Geography, mun: IntArray, u: FloatArray) -> IntArray:
    """Population-weighted neighbourhood in ``mun`` for uniforms ``u`` in [0, 1)."""
    idx = np.searchsorted(geo.nb_cdf_keys, mun.astype(np.float64) + u, side="right")
    # Guard against float rounding at a municipality's upper edge.
    return np.minimum(idx, geo.nb_offsets[mun + 1] - 1).astype(np.int64)


def _other_places(rng: np.random.Generator, geo: _Geography, home: IntArray) -> IntArray:
    """(n, MAX_OTHER_PLACES) gravity-weighted distinct other municipalities per device,
    in order of decreasing preference (Gumbel top-k = weighted sampling w/o replacement)."""
    n = home.shape[0]
    out = np.empty((n, MAX_OTHER_PLACES), dtype=np.int64)
    order = np.argsort(home, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(home, minlength=N_MUNICIPALITIES))))
    for m in range(N_MUNICIPALITIES):
        devs = order[bounds[m] : bounds[m + 1]]
        if devs.size == 0:
            continue
        scores = geo.log_gravity[m][None, :] + rng.gumbel(size=(devs.size, N_MUNICIPALITIES))
        top = np.argpartition(-scores, MAX_OTHER_PLACES, axis=1)[:, :MAX_OTHER_PLACES]
        top_scores = np.take_along_axis(scores, top, axis=1)
        out[devs] = np.take_along_axis(top, np.argsort(-top_scores, axis=1), axis=1)
    return out


def _hour_keys() -> FloatArray:
    """The hourly profiles' CDFs, each offset by its profile index and flattened, so that
    one ``searchsorted`` of ``profile + u`` draws an hour from each event's own profile."""
    table = np.asarray(_HOURS, dtype=np.float64)
    cdf = np.cumsum(table, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    keys: FloatArray = (cdf + np.arange(len(_HOURS), dtype=np.float64)[:, None]).ravel()
    return keys


_HOUR_KEYS: Final = _hour_keys()


@dataclass(frozen=True)
class _DeviceState:
    slot_keys: FloatArray  # flattened per-device slot CDF, offset by device index
    k_other: IntArray  # number of other places per device
    commuter: npt.NDArray[np.bool_]
    slot_mun: IntArray  # (devices, _SLOTS) municipality per slot
    slot_nb: IntArray  # (devices, _SLOTS) anchor neighbourhood per slot


def _codes(col: str, codes: list[str]) -> pl.Expr:
    """Map integer column ``col`` (indices into ``codes``) to String codes.  Casting an
    integer to ``Enum`` reads it as the category index; unlike ``replace_strict`` this
    streams in ``sink_parquet`` without materialising the column."""
    return pl.col(col).cast(pl.Enum(codes)).cast(pl.String)


def _day_events(
    rng: np.random.Generator,
    geo: _Geography,
    state: _DeviceState,
    counts: IntArray,
    weekend: bool,
) -> dict[str, npt.NDArray[Any]]:
    """One day's events as compact arrays, sorted by device and time."""
    dev = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    n = dev.shape[0]
    u = rng.random(n)
    slot = np.searchsorted(state.slot_keys, dev + u, side="right") - dev * _SLOTS
    np.clip(slot, 0, state.k_other[dev], out=slot)
    if weekend:  # commuters mostly skip work and stay home
        skip = state.commuter[dev] & (slot == 1) & (rng.random(n) < 0.7)
        slot[skip] = 0

    at_home = slot == 0
    mun = state.slot_mun[dev, slot]
    anchored = rng.random(n) < np.where(at_home, 0.8, 0.6)
    nb = np.where(anchored, state.slot_nb[dev, slot], _pick_nb(geo, mun, rng.random(n)))

    if weekend:
        profile = np.where(at_home, _WEEKEND_HOME, _WEEKEND_AWAY)
    else:
        commuter = state.commuter[dev]
        profile = np.where(
            at_home,
            np.where(commuter, _COMMUTER_HOME, _HOME),
            np.where(commuter & (slot == 1), _COMMUTER_WORK, _AWAY),
        )
    hour = np.searchsorted(_HOUR_KEYS, profile + rng.random(n), side="right") - profile * 24
    np.clip(hour, 0, 23, out=hour)
    mu = np.where(at_home, math.log(45.0), math.log(20.0))
    dwell = np.round(np.clip(rng.lognormal(mu, 1.0), *DWELL_BOUNDS), 1)
    # seconds since the day's midnight (local time): the hour plus a uniform minute and second
    second = hour * _SECONDS_PER_HOUR + rng.integers(0, _SECONDS_PER_HOUR, size=n)

    order = np.argsort(dev * 86_400 + second, kind="stable")
    return {
        "dev": dev[order].astype(np.uint32),
        "mun": mun[order].astype(np.uint16),
        "nb": nb[order].astype(np.uint16),
        "dwell": dwell[order],
        "second": second[order].astype(np.int32),
    }


def generate(
    out_dir: Path,
    *,
    devices: int = 20_000,
    days: int = 7,
    seed: int = 42,
    start: date = date(2026, 3, 1),
    events_per_day: float = 7.0,
) -> DemoFiles:
    """Write ``mobility_events.parquet`` and ``residents.parquet`` into ``out_dir``."""
    if devices < 1 or days < 1:
        raise ValueError("devices and days must be positive")
    if not events_per_day > 0:
        raise ValueError("events_per_day must be positive")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Geography depends on the seed only, so the public code lists do not change with size.
    geo_seed, dev_seed, event_seed = np.random.SeedSequence(seed).spawn(3)
    geo = _build_geography(np.random.default_rng(geo_seed))

    # ---- devices -------------------------------------------------------------------
    rng = np.random.default_rng(dev_seed)
    home = rng.choice(N_MUNICIPALITIES, size=devices, p=geo.population).astype(np.int64)
    home_nb = _pick_nb(geo, home, rng.random(devices))
    others = _other_places(rng, geo, home)
    dtype = rng.choice(len(_TYPE_PROBS), size=devices, p=_TYPE_PROBS)
    lo = np.array([t[0] for t in _TYPE_OTHERS])[dtype]
    hi = np.array([t[1] for t in _TYPE_OTHERS])[dtype]
    k_other = rng.integers(lo, hi + 1)
    commuter = dtype == _COMMUTER

    slot_mun = np.empty((devices, _SLOTS), dtype=np.int64)
    slot_mun[:, 0] = home
    slot_mun[:, 1:] = others
    slot_nb = np.empty((devices, _SLOTS), dtype=np.int64)
    slot_nb[:, 0] = home_nb
    slot_nb[:, 1:] = _pick_nb(geo, others.ravel(), rng.random(devices * MAX_OTHER_PLACES)).reshape(
        devices, MAX_OTHER_PLACES
    )

    home_share = np.clip(rng.normal(0.75, 0.07, size=devices), 0.5, 0.95)
    home_share[commuter] = np.clip(rng.normal(0.55, 0.07, size=int(commuter.sum())), 0.35, 0.8)
    home_share[k_other == 0] = 1.0
    w = rng.exponential(size=(devices, MAX_OTHER_PLACES))
    w[commuter, 0] *= 6.0  # the work municipality dominates a commuter's time away
    w[np.arange(MAX_OTHER_PLACES)[None, :] >= k_other[:, None]] = 0.0
    w_sum = w.sum(axis=1)
    w_norm = np.divide(w, w_sum[:, None], out=np.zeros_like(w), where=w_sum[:, None] > 0)
    probs = np.empty((devices, _SLOTS), dtype=np.float64)
    probs[:, 0] = home_share
    probs[:, 1:] = w_norm * (1.0 - home_share)[:, None]
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    slot_keys = (cdf + np.arange(devices, dtype=np.float64)[:, None]).ravel()
    del w, w_norm, probs, cdf, others

    # ---- events, generated one day at a time to bound memory ---------------------------
    rng = np.random.default_rng(event_seed)
    cap = _max_events_per_day(events_per_day)
    counts = np.minimum(rng.poisson(events_per_day, size=(days, devices)), cap)
    silent = counts.sum(axis=0) == 0  # every device is seen at least once
    counts[rng.integers(0, days, size=int(silent.sum())), np.flatnonzero(silent)] = 1
    n = int(counts.sum())
    state = _DeviceState(slot_keys, k_other, commuter, slot_mun, slot_nb)
    chunks = [
        _day_events(rng, geo, state, counts[d], (start + timedelta(days=d)).weekday() >= 5)
        for d in range(days)
    ]
    del counts, state, slot_keys, slot_mun, slot_nb

    epoch = (start - date(1970, 1, 1)).days
    day_counts = [c["dev"].shape[0] for c in chunks]
    numeric = pl.DataFrame(
        {
            "dev": np.concatenate([c.pop("dev") for c in chunks]),
            "day": np.repeat(np.arange(days, dtype=np.int32) + epoch, day_counts),
            "mun": np.concatenate([c.pop("mun") for c in chunks]),
            "nb": np.concatenate([c.pop("nb") for c in chunks]),
            "dwell_minutes": np.concatenate([c.pop("dwell") for c in chunks]),
            "second": np.concatenate([c.pop("second") for c in chunks]),
        }
    )
    del chunks
    width = max(7, len(str(devices - 1)))
    events_path = out_dir / EVENTS_FILE
    # Map the compact integer columns to their string codes while streaming to parquet.
    seconds = pl.col("day").cast(pl.Int64) * 86_400 + pl.col("second").cast(pl.Int64)
    numeric.lazy().select(
        pl.format("d{}", pl.col("dev").cast(pl.String).str.zfill(width)).alias("device_id"),
        pl.col("day").cast(pl.Date),
        (seconds * _US_PER_SECOND).cast(pl.Datetime("us")).alias("ts"),
        _codes("mun", geo.mun_codes).alias("municipality"),
        _codes("nb", geo.nb_codes).alias("neighbourhood"),
        pl.col("dwell_minutes"),
    ).sink_parquet(events_path, compression="zstd", statistics=True)
    del numeric

    residents = derive_residents(pl.scan_parquet(events_path)).collect(engine="streaming")
    residents_path = out_dir / RESIDENTS_FILE
    residents.write_parquet(residents_path, compression="zstd", statistics=True)

    return DemoFiles(
        events_path=events_path,
        residents_path=residents_path,
        n_events=n,
        n_devices=devices,
        municipality_codes=list(geo.mun_codes),
        neighbourhood_codes=sorted(geo.nb_codes),
        days=[start + timedelta(days=d) for d in range(days)],
        max_events_per_day=cap,
        neighbourhood_municipality=_neighbourhood_map(geo),
    )


def describe(
    out_dir: Path,
    *,
    devices: int = 20_000,
    days: int = 7,
    seed: int = 42,
    start: date = date(2026, 3, 1),
    events_per_day: float = 7.0,
) -> DemoFiles:
    """The :class:`DemoFiles` of files that :func:`generate` already wrote with these
    parameters (reads only the Parquet footer for the number of events)."""
    geo = _build_geography(np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0]))
    events_path = out_dir / EVENTS_FILE
    n_events = pl.scan_parquet(events_path).select(pl.len()).collect().item()
    return DemoFiles(
        events_path=events_path,
        residents_path=out_dir / RESIDENTS_FILE,
        n_events=int(n_events),
        n_devices=devices,
        municipality_codes=list(geo.mun_codes),
        neighbourhood_codes=sorted(geo.nb_codes),
        days=[start + timedelta(days=d) for d in range(days)],
        max_events_per_day=_max_events_per_day(events_per_day),
        neighbourhood_municipality=_neighbourhood_map(geo),
    )


def derive_residents(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per device: the municipality with the most events, and within it the neighbourhood
    with the most events.  Ties go to the smallest code."""

    def most_frequent(frame: pl.LazyFrame, col: str, out: str) -> pl.LazyFrame:
        return (
            frame.group_by("device_id", col)
            .len()
            .sort(["device_id", "len", col], descending=[False, True, False])
            .unique(subset="device_id", keep="first", maintain_order=True)
            .select("device_id", pl.col(col).alias(out))
        )

    home_mun = most_frequent(events, "municipality", "home_municipality")
    in_home = events.join(
        home_mun, left_on=["device_id", "municipality"], right_on=["device_id", "home_municipality"]
    )
    home_nb = most_frequent(in_home, "neighbourhood", "home_neighbourhood")
    return home_mun.join(home_nb, on="device_id").sort("device_id")


def events_registration(files: DemoFiles) -> dict[str, Any]:
    """JSON body registering ``mobility_events`` with Ruis."""
    return {
        "name": "mobility_events",
        "path": files.events_path.name,
        "privacy_unit": "device_id",
        "columns": {
            "municipality": {"type": "categorical", "keys": list(files.municipality_codes)},
            "neighbourhood": {"type": "categorical", "keys": list(files.neighbourhood_codes)},
            "day": {"type": "date", "keys": [d.isoformat() for d in files.days]},
            "ts": {"type": "datetime"},
            "dwell_minutes": {"type": "float", "bounds": list(DWELL_BOUNDS)},
            # local time: ts is stored as the wall clock, so no time_zone
            "hour": {"type": "derived", "from": "ts", "part": "hour"},
            "weekday": {"type": "derived", "from": "ts", "part": "weekday"},
        },
        "hierarchy": {
            "neighbourhood": {
                "parent": "municipality",
                "map": dict(files.neighbourhood_municipality),
            }
        },
        # chosen per query by a small DP release (privacy/auto): a fixed 3 and 1 kept
        # about a tenth of the (device, municipality, day) contributions
        "max_partitions_contributed": "auto",
        "max_contributions_per_partition": "auto",
        # a device has up to ~100 events in its home municipality over two weeks
        "auto_limits": {"max_partitions_contributed": 100, "max_contributions_per_partition": 100},
        "max_rows": files.max_rows,
        "budget_cap": {"model": "pure", "epsilon": 50},
    }


def residents_registration(files: DemoFiles) -> dict[str, Any]:
    """JSON body registering ``residents`` with Ruis."""
    return {
        "name": "residents",
        "path": files.residents_path.name,
        "privacy_unit": "device_id",
        "columns": {
            "home_municipality": {"type": "categorical", "keys": list(files.municipality_codes)},
            "home_neighbourhood": {
                "type": "categorical",
                "keys": list(files.neighbourhood_codes),
            },
        },
        "max_partitions_contributed": 1,
        "max_contributions_per_partition": 1,
        "max_rows": files.n_devices,
        "budget_cap": {"model": "pure", "epsilon": 50},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli.demo_data", description="Write Ruis synthetic demo data."
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 1))
    parser.add_argument("--events-per-day", type=float, default=7.0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    files = generate(
        args.out_dir,
        devices=args.devices,
        days=args.days,
        seed=args.seed,
        start=args.start,
        events_per_day=args.events_per_day,
    )
    elapsed = time.perf_counter() - t0
    mb = (files.events_path.stat().st_size + files.residents_path.stat().st_size) / 1e6
    print(
        f"wrote {files.n_events:,} events for {files.n_devices:,} devices over "
        f"{len(files.days)} days to {args.out_dir} ({mb:.1f} MB) in {elapsed:.2f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
