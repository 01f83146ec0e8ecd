"""Repeated bench runs into one row each: medians, spread, the peak they are judged against, flags.

``make bench`` measures every row several times, interleaved with the other implementations of the
same model and size (one fresh process per run, the order alternating between rounds), so a slow
moment of the machine hits all of them instead of one. Here the runs of a row become one row:

- ``forward_ms`` / ``train_step_ms``: the median of the runs' medians; ``*_runs_ms`` the runs';
  ``*_spread``: (max - min) / median over the runs (None with one run);
- ``peak_rss_mib``: the largest of the runs (the target is a ceiling);
- a row is **unreliable** (``reliable: false``, reasons in ``unreliable``) when a spread is above
  ``MAX_SPREAD``, when it ran once, when its forward GFLOP/s is above the probed peak (the probe
  or the row was disturbed), or when the efficient geometry was not faster than the faithful one
  of the same model and size although it does about half the FLOPs.
"""

from __future__ import annotations

import statistics

MAX_SPREAD = 0.10
IDENTITY = ("impl", "model", "geometry", "backbone", "height", "width")
SAME_IN_EVERY_RUN = ("params", "gflop", "train_gflop", "threads")


def row_key(row: dict) -> tuple:
    return tuple(row[k] for k in IDENTITY)


def spread(values: list[float]) -> float | None:
    """(max - min) / median, the relative range of repeated figures; None for fewer than two."""
    if len(values) < 2:
        return None
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid > 0 else None


def aggregate(runs: list[dict]) -> list[dict]:
    """One row per (impl, model, geometry, backbone, size), in the order first measured."""
    grouped: dict[tuple, list[dict]] = {}
    for run in runs:
        grouped.setdefault(row_key(run), []).append(run)
    rows = []
    for same in grouped.values():
        row = {k: same[0][k] for k in (*IDENTITY, *SAME_IN_EVERY_RUN) if k in same[0]}
        for key in ("forward_ms", "train_step_ms"):
            values = [r[key] for r in same]
            row[key] = float(statistics.median(values))
            row[key.replace("_ms", "_runs_ms")] = values
            row[key.replace("_ms", "_spread")] = spread(values)
            row[key.replace("_ms", "_min_ms")] = min(
                r.get(key.replace("_ms", "_min_ms"), r[key]) for r in same
            )
        row["rounds"] = [r.get("round") for r in same]
        row["repeats"] = len(same)
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in same)
        row["peak_rss_runs_mib"] = [r["peak_rss_mib"] for r in same]
        row["rss_model_mib"] = float(statistics.median(r["rss_model_mib"] for r in same))
        if "peak_gpu_mib" in same[0]:
            row["peak_gpu_mib"] = max(r["peak_gpu_mib"] for r in same)
        rows.append(row)
    return rows


def peak_reference(rows: list[dict], probe_gflops: float, probe_shape: str) -> tuple[float, str]:
    """(GFLOP/s the shares are taken against, where it comes from): the probe, or the best row if higher."""
    best = max(rows, key=lambda r: r["gflop"] / r["forward_ms"] * 1000, default=None)
    achieved = best["gflop"] / best["forward_ms"] * 1000 if best else 0.0
    if best is not None and achieved > probe_gflops:
        name = f"{best['impl']} {best['model']} {best['geometry']} {best['height']}x{best['width']}"
        return (
            achieved,
            f"achieved: {name} forward ({achieved:.0f} GFLOP/s, above the probe's {probe_gflops:.0f})",
        )
    return probe_gflops, f"probe: {probe_shape}"


def flag_rows(rows: list[dict], probe_gflops: float, max_spread: float = MAX_SPREAD) -> list[dict]:
    """Set ``reliable`` and ``unreliable`` (the reasons) on every row, in place; returns ``rows``."""
    for row in rows:
        why = []
        if row.get("repeats", 1) < 2:
            why.append("measured once: spread unknown")
        for key, name in (("forward_spread", "forward"), ("train_step_spread", "train step")):
            value = row.get(key)
            if value is not None and value > max_spread:
                why.append(f"{name} spread {value:.0%} > {max_spread:.0%}")
        gflops = row["gflop"] / row["forward_ms"] * 1000
        if gflops > probe_gflops:
            why.append(f"forward {gflops:.0f} GFLOP/s is above the probed peak {probe_gflops:.0f}")
        row["unreliable"] = why
    for faithful in rows:
        if faithful["geometry"] != "faithful" or faithful["impl"] != "fcnlab":
            continue
        for efficient in rows:
            same = all(efficient[k] == faithful[k] for k in ("impl", "model", "backbone", "height", "width"))
            if not same or efficient["geometry"] != "efficient" or efficient["gflop"] >= faithful["gflop"]:
                continue
            for key, name in (("forward_ms", "forward"), ("train_step_ms", "train step")):
                if efficient[key] >= faithful[key]:
                    note = (
                        f"efficient {name} not faster than faithful at "
                        f"{efficient['gflop'] / faithful['gflop']:.2f}x the FLOPs"
                    )
                    efficient["unreliable"].append(note)
                    faithful["unreliable"].append(note)
    for row in rows:
        row["reliable"] = not row["unreliable"]
    return rows


def paired_ratios(row: dict, peer: dict, key: str) -> list[float]:
    """Per-round ratios row/peer of ``key`` (runs of one round were measured side by side)."""
    mine = dict(zip(row.get("rounds", []), row.get(key.replace("_ms", "_runs_ms"), []), strict=False))
    theirs = dict(zip(peer.get("rounds", []), peer.get(key.replace("_ms", "_runs_ms"), []), strict=False))
    return [mine[r] / theirs[r] for r in mine if r is not None and r in theirs and theirs[r] > 0]
