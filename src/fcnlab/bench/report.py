"""Derived fields (GFLOP/s, share of peak, ratios to torchfcn), the targets, and the printed table.

Each target is ``pass``, ``fail``, ``unreliable`` (a row it rests on is flagged by
:func:`fcnlab.bench.aggregate.flag_rows`, or the side-by-side runs fall on both sides of the limit)
or ``not measured``; ``met`` is True / False / None for pass / fail / otherwise.
"""

from __future__ import annotations

from fcnlab.bench.aggregate import paired_ratios

GIB = 1024  # MiB


def _size(row: dict) -> str:
    return f"{row['height']}x{row['width']}"


def peer_of(row: dict, rows: list[dict]) -> dict | None:
    """The torchfcn row measured at the same model and size as an fcnlab row, if any."""
    for other in rows:
        if other["impl"] == "torchfcn" and other["model"] == row["model"] and _size(other) == _size(row):
            return other
    return None


def add_derived(rows: list[dict], peak_conv_gflops: float) -> list[dict]:
    """Fill achieved GFLOP/s, ``peak_fraction`` (vs the conv peak) and the ratios to torchfcn, in place."""
    for row in rows:
        row["forward_gflops"] = row["gflop"] / row["forward_ms"] * 1000
        row["train_gflops"] = row["train_gflop"] / row["train_step_ms"] * 1000
        row["peak_fraction"] = row["forward_gflops"] / peak_conv_gflops
        row["train_peak_fraction"] = row["train_gflops"] / peak_conv_gflops
    for row in rows:
        peer = peer_of(row, rows) if row["impl"] == "fcnlab" else None
        row["peer"] = f"torchfcn {peer['model']}" if peer else None
        for key in ("forward_ms", "train_step_ms", "gflop", "forward_gflops", "train_gflops"):
            ratio_key = key.removesuffix("_ms") + "_ratio"
            row[ratio_key] = row[key] / peer[key] if peer else None
        for key in ("forward_ms", "train_step_ms"):  # the same round's runs were measured side by side
            paired = paired_ratios(row, peer, key) if peer else []
            row[key.removesuffix("_ms") + "_ratio_runs"] = paired or None
    return rows


def _check(
    name: str, value: float | None, limit: float, at_most: bool, detail: str, rows: list[dict] = (), runs=()
) -> dict:
    """One target: its status from ``value`` vs ``limit``, unreliable if a row behind it is flagged."""
    ok = (lambda v: v <= limit) if at_most else (lambda v: v >= limit)
    flagged = [r for r in rows if r.get("reliable") is False]
    runs = [v for v in runs if v is not None]
    if value is None:
        status = "not measured"
    elif flagged:
        status = "unreliable"
        detail += "; unreliable rows: " + ", ".join(
            f"{r['impl']} {r['model']} {r['geometry']} {_size(r)}" for r in flagged
        )
    elif runs and len({ok(v) for v in runs}) > 1:
        status = "unreliable"
        detail += f"; the side-by-side runs fall on both sides of the limit ({min(runs):.2f}-{max(runs):.2f})"
    else:
        status = "pass" if ok(value) else "fail"
    met = {"pass": True, "fail": False}.get(status)
    return {"target": name, "status": status, "met": met, "value": value, "limit": limit, "detail": detail}


def _ratio_target(rows: list[dict], name: str, key: str, limit: float, pick) -> dict:
    chosen = [r for r in rows if r["impl"] == "fcnlab" and r.get(key) is not None and pick(r)]
    if not chosen:
        return _check(name, None, limit, True, "not measured")
    worst = max(chosen, key=lambda r: r[key])
    each = ", ".join(f"{r['model']} {r['geometry']} {_size(r)} {r[key]:.2f}x" for r in chosen)
    speed = "train_gflops_ratio" if key == "train_step_ratio" else "forward_gflops_ratio"
    why = (
        f"worst {worst['model']} {_size(worst)}: {worst['gflop_ratio']:.2f}x torchfcn's FLOPs at "
        f"{worst[speed]:.2f}x its GFLOP/s; {each}"
    )
    involved = [*chosen, *(p for r in chosen if (p := peer_of(r, rows)) is not None)]
    return _check(name, worst[key], limit, True, why, involved, worst.get(f"{key}_runs") or ())


def _faithful(r: dict) -> bool:
    return r["geometry"] == "faithful"


def _efficient_8s(r: dict) -> bool:
    return r["geometry"] == "efficient" and r["model"] == "fcn8s"


def _vgg_peak_target(result: dict) -> dict:
    name = "every VGG16 row's forward >= 75% of the peak"
    vgg = [r for r in result["rows"] if r["impl"] == "fcnlab" and r["backbone"] == "vgg16"]
    if not vgg:
        return _check(name, None, 0.75, False, "not measured")
    worst = min(vgg, key=lambda r: r["peak_fraction"])
    best = max(vgg, key=lambda r: r["peak_fraction"])
    detail = (
        f"worst {worst['model']} {worst['geometry']} {_size(worst)}: {worst['forward_gflops']:.0f} of "
        f"{result['peak_reference_gflops']:.0f} GFLOP/s ({result['peak_source']}); best {best['model']} "
        f"{best['geometry']} {_size(best)} {best['peak_fraction']:.0%}"
    )
    return _check(name, worst["peak_fraction"], 0.75, False, detail, vgg)


def _loader_target(result: dict) -> dict:
    ratio = result.get("loader_over_train")
    detail = (
        "not measured"
        if ratio is None
        else (f"{result['loader_images_per_s']:.0f} vs {result['train_images_per_s']:.0f} images/s")
    )
    return _check("train loader >= 3x training throughput", ratio, 3.0, False, detail)


def _rss_target(rows: list[dict]) -> dict:
    big = [
        r
        for r in rows
        if r["impl"] == "fcnlab"
        and r["model"] == "fcn8s"
        and r["backbone"] == "vgg16"
        and _size(r) == "500x500"
    ]
    worst = max(big, key=lambda r: r["peak_rss_mib"]) if big else None
    detail = (
        "not measured"
        if worst is None
        else (
            f"worst {worst['geometry']}: {worst['peak_rss_mib']:.0f} MiB, the largest of its runs (process "
            f"with the model built: {worst['rss_model_mib']:.0f} MiB)"
        )
    )
    value = None if worst is None else worst["peak_rss_mib"]
    name = "peak RSS of an FCN-8s VGG16 train step at 500x500 <= 3 GiB"
    return _check(name, value, 3 * GIB, True, detail)  # the largest run decides: a ceiling


def targets(result: dict) -> list[dict]:
    """The benchmark's targets, each with the measured value, its status and why."""
    rows = result["rows"]
    return [
        _ratio_target(rows, "faithful forward <= 0.8x torchfcn", "forward_ratio", 0.8, _faithful),
        _ratio_target(rows, "faithful train step <= 0.8x torchfcn", "train_step_ratio", 0.8, _faithful),
        _ratio_target(rows, "efficient FCN-8s forward <= 0.4x torchfcn", "forward_ratio", 0.4, _efficient_8s),
        _ratio_target(
            rows, "efficient FCN-8s train step <= 0.45x torchfcn", "train_step_ratio", 0.45, _efficient_8s
        ),
        _vgg_peak_target(result),
        _loader_target(result),
        _rss_target(rows),
    ]


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def table_lines(rows: list[dict]) -> list[str]:
    """The rows as a Markdown table (what ``make bench`` prints and docs/performance.md shows)."""
    lines = [
        "| impl | model | geometry | size | fwd ms | fwd spread | train ms | train spread | GFLOP | GFLOP/s "
        "| % peak | peak RSS MiB | fwd × torchfcn | train × torchfcn | reliable |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flag = "yes" if r.get("reliable", True) else "**NO**: " + "; ".join(r.get("unreliable", []))
        lines.append(
            f"| {r['impl']} | {r['model']} | {r['geometry']} | {_size(r)} | {r['forward_ms']:.0f} | "
            f"{_pct(r.get('forward_spread'))} | {r['train_step_ms']:.0f} | "
            f"{_pct(r.get('train_step_spread'))} | {r['gflop']:.1f} | {r['forward_gflops']:.0f} | "
            f"{r['peak_fraction']:.0%} | {r['peak_rss_mib']:.0f} | "
            f"{_fmt(r.get('forward_ratio'), '.2f')} | {_fmt(r.get('train_step_ratio'), '.2f')} | {flag} |"
        )
    return lines


def target_lines(checks: list[dict]) -> list[str]:
    """One line per target: pass / FAIL / UNRELIABLE / not measured, the value and the measured reason."""
    word = {"pass": "pass", "fail": "FAIL", "unreliable": "UNRELIABLE", "not measured": "not measured"}
    return [f"- [{word[c['status']]}] {c['target']}: {c['detail']}" for c in checks]
