"""Baseline against candidate: which metric moved, by how much, and into which band.

:func:`compare` takes two summaries from :func:`analysis.metrics.summarize` and returns a
JSON-ready dict. A statistic has *moved* when it changed by at least ``moved_pct`` percent
(default 5 %) or crossed a band edge. For roundtrip, latency and reconnections higher is worse;
chunks only get longer or shorter. The time to an audible reply is compared too, without bands.
Like the report, a comparison is of real-time turns; it says how many fast-paced turns each
run left out.
"""

from __future__ import annotations

from voiceharness import bands

COMPARED_STATS = ("p50", "p95", "p99")
MOVED_PCT = 5.0
HIGHER_IS_WORSE = {bands.ROUNDTRIP: True, bands.LATENCY: True, bands.RECONNECTIONS: True, bands.CHUNKS: None}


def _direction(higher_is_worse: bool | None, delta: float) -> str:
    if delta == 0:
        return "same"
    if higher_is_worse is None:
        return "longer" if delta > 0 else "shorter"
    return "worse" if (delta > 0) == higher_is_worse else "better"


# Timings with no documented band, compared like the banded ones (higher is worse).
UNBANDED = {"audible": "audible"}


def compare_values(
    metric: str,
    stat: str,
    baseline: float | None,
    candidate: float | None,
    *,
    moved_pct: float = MOVED_PCT,
) -> dict:
    """One row: both values, the delta (absolute and percent), each value's band, and whether it moved."""
    row = {
        "metric": metric,
        "stat": stat,
        "baseline": baseline,
        "candidate": candidate,
        "delta": None,
        "delta_pct": None,
        "baseline_band": None,
        "candidate_band": None,
        "direction": "n/a",
        "moved": False,
    }
    if baseline is None or candidate is None:
        return row
    delta = candidate - baseline
    row["delta"] = delta
    row["delta_pct"] = (delta / baseline * 100.0) if baseline else (0.0 if delta == 0 else None)
    if metric in bands.BANDS:
        row["baseline_band"] = bands.band_of(metric, baseline)
        row["candidate_band"] = bands.band_of(metric, candidate)
    row["direction"] = _direction(HIGHER_IS_WORSE.get(metric, True), delta)
    big = row["delta_pct"] is None or abs(row["delta_pct"]) >= moved_pct
    row["moved"] = bool(delta != 0 and (big or row["baseline_band"] != row["candidate_band"]))
    return row


def compare(baseline: dict, candidate: dict, *, moved_pct: float = MOVED_PCT) -> dict:
    """What changed from ``baseline`` to ``candidate`` (two summaries)."""
    rows = []
    overall = []
    for metric, higher_is_worse in HIGHER_IS_WORSE.items():
        old, new = baseline["metrics"][metric], candidate["metrics"][metric]
        for stat in COMPARED_STATS:
            rows.append(
                compare_values(
                    metric,
                    stat,
                    old["percentiles"].get(stat),
                    new["percentiles"].get(stat),
                    moved_pct=moved_pct,
                )
            )
        if old["band"] and new["band"]:
            change = bands.band_rank(metric, new["band"]) - bands.band_rank(metric, old["band"])
            moved = "same" if change == 0 else _direction(higher_is_worse, change)
        else:
            moved = "n/a"
        overall.append({"metric": metric, "baseline": old["band"], "candidate": new["band"], "change": moved})
    old_audible = (baseline.get("audible") or {}).get("percentiles") or {}
    new_audible = (candidate.get("audible") or {}).get("percentiles") or {}
    if old_audible.get("p50") is not None or new_audible.get("p50") is not None:
        for stat in COMPARED_STATS:
            rows.append(compare_values("audible", stat, old_audible.get(stat), new_audible.get(stat), moved_pct=moved_pct))
    scalars = []
    for name, old, new, higher_is_worse in (
        ("intent.accuracy", baseline["intent"].get("accuracy"), candidate["intent"].get("accuracy"), False),
        ("failures.rate", _realtime(baseline).get("failure_rate"), _realtime(candidate).get("failure_rate"), True),
        ("judge.agreement", (baseline.get("judge") or {}).get("agreement"),
         (candidate.get("judge") or {}).get("agreement"), False),
    ):
        if name == "judge.agreement" and old is None and new is None:
            continue
        delta = None if old is None or new is None else new - old
        scalars.append(
            {
                "name": name,
                "baseline": old,
                "candidate": new,
                "delta": delta,
                "direction": "n/a" if delta is None else _direction(higher_is_worse, delta),
                # Fractions: a move of half a percentage point or more is worth a look.
                "moved": delta is not None and abs(delta) >= 0.005,
            }
        )
    moved = [f"{r['metric']}.{r['stat']}" for r in rows if r["moved"]] + [
        s["name"] for s in scalars if s["moved"]
    ]
    worse = [f"{r['metric']}.{r['stat']}" for r in rows if r["moved"] and r["direction"] == "worse"]
    worse += [s["name"] for s in scalars if s["moved"] and s["direction"] == "worse"]
    return {
        "baseline": baseline["run"]["label"],
        "candidate": candidate["run"]["label"],
        "baseline_prefix": baseline["run"]["prefix"],
        "candidate_prefix": candidate["run"]["prefix"],
        "moved_pct": moved_pct,
        "rows": rows,
        "bands": overall,
        "scalars": scalars,
        "moved": moved,
        "worse": worse,
        "exact": bool(baseline["run"]["mode"] == "turns" and candidate["run"]["mode"] == "turns"),
        "fast_left_out": {
            "baseline": (baseline.get("fast") or {}).get("turns") or 0,
            "candidate": (candidate.get("fast") or {}).get("turns") or 0,
        },
    }


def _realtime(summary: dict) -> dict:
    """The real-time turns' counts (the whole run's for a Locust-only summary, which has no pace)."""
    return summary["run"].get("realtime") or summary["run"]
