#!/usr/bin/env python3
"""Cross-check drivetag against trackintel and movingpandas on the recorded drives.

For every recording in the data folder (default ``../shared/data`` beside the checkout, or
``$DRIVETAG_DATA_DIR``, or ``--data``):

1. runs ``drivetag-agent summarize --json`` with ``bridge_gaps = false`` (trackintel's stay
   rule) and compares
   * its stays with trackintel 1.4.2 ``generate_staypoints(method="sliding", ...)`` on the same
     fixes: count, start and end times, distance between the centres;
   * its trips with the drivetag reference rule and with movingpandas 0.23.0 (both from
     ``shared/data/tools/reference_figures.py``): count, km, start and end times;
   and prints an agreement table against the tolerances of ``shared/data/README.md``;
2. times trackintel's stay-point generation (positionfixes built beforehand, best of 3) and
   drivetag's ``StayDetector`` (``agent/examples/stays_bench.rs``) on the same recordings in
   the same run, and prints the speed ratio (target: drivetag at least 50x faster).

Parsing, cleaning, the trip rule and the trackintel and movingpandas calls are imported from
``reference_figures.py`` (our own script in the read-only data folder), so the figures are the
README's by construction. Run it through ``crosscheck.sh``, which sets up the virtualenv and
builds the agent. Exit status 1 if a figure is outside its tolerance or the ratio misses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# Tolerances of shared/data/README.md, section 2.
STAY_TIME_S = 120.0
STAY_CENTRE_M = 100.0
TRIP_KM_SHARE = 0.03
TRIP_TIME_S = 600.0
# dg100.gpx: "7 with the literal reference rule, 5-7 for other stop detectors" (README).
TRIP_COUNT_RANGE = {"dg100.gpx": (5, 7)}
SPEED_RATIO_TARGET = 50.0
BENCH_FILES = ["dg100.gpx", "switzerland-2010-04-03.nmea"]
SUFFIXES = (".nmea", ".gpx", ".log")
TRACKINTEL_ARGS = dict(
    method="sliding",
    distance_metric="haversine",
    dist_threshold=100,
    time_threshold=5.0,
    gap_threshold=15.0,
    include_last=False,
    exclude_duplicate_pfs=True,
    n_jobs=1,
    print_progress=False,
)


def default_data_dir() -> Path:
    env = os.environ.get("DRIVETAG_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def import_reference(data_dir: Path):
    """reference_figures.py from the data folder, without writing bytecode there (read-only)."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(data_dir / "tools"))
    import reference_figures  # noqa: PLC0415

    return reference_figures


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds(a: dt.datetime, b: dt.datetime) -> float:
    return (a - b).total_seconds()


def drivetag_summary(agent: Path, config: Path, path: Path) -> dict:
    out = subprocess.run(
        [str(agent), "summarize", "--json", "--config", str(config), str(path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DRIVETAG_LOG": "warn"},
    )
    return json.loads(out.stdout)


def match_by_overlap(ours: list[dict], theirs: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs intervals (dicts with start/end datetimes) by largest overlap, each used once."""
    pairs = []
    used: set[int] = set()
    for a in ours:
        best, best_overlap = None, None
        for j, b in enumerate(theirs):
            if j in used:
                continue
            overlap = seconds(min(a["end"], b["end"]), max(a["start"], b["start"]))
            # Touching or near intervals (a stay of a few minutes moved by seconds) still pair.
            if overlap > -TRIP_TIME_S and (best_overlap is None or overlap > best_overlap):
                best, best_overlap = j, overlap
        if best is not None:
            used.add(best)
            pairs.append((a, theirs[best]))
    return pairs


def compare_stays(rf, ours: list[dict], theirs: list[dict]) -> dict:
    pairs = match_by_overlap(ours, theirs)
    d_start = [abs(seconds(a["start"], b["start"])) for a, b in pairs]
    d_end = [abs(seconds(a["end"], b["end"])) for a, b in pairs]
    d_centre = [rf.haversine_m(a["lat"], a["lon"], b["lat"], b["lon"]) for a, b in pairs]
    ok = (
        len(ours) == len(theirs) == len(pairs)
        and all(x <= STAY_TIME_S for x in d_start + d_end)
        and all(x <= STAY_CENTRE_M for x in d_centre)
    )
    return {
        "count": (len(theirs), len(ours)),
        "start_s": max(d_start, default=0.0),
        "end_s": max(d_end, default=0.0),
        "centre_m": max(d_centre, default=0.0),
        "ok": ok,
    }


def compare_trips(ours: list[dict], theirs: list[dict], allowed: tuple[int, int]) -> dict:
    pairs = match_by_overlap(ours, theirs)
    km = [abs(a["distance_km"] - b["distance_km"]) / max(b["distance_km"], 1e-9) for a, b in pairs]
    d_start = [abs(seconds(a["start"], b["start"])) for a, b in pairs]
    d_end = [abs(seconds(a["end"], b["end"])) for a, b in pairs]
    lo, hi = allowed
    count_ok = lo <= len(ours) <= hi
    ok = (
        count_ok
        and len(pairs) == min(len(ours), len(theirs))
        and all(x <= TRIP_KM_SHARE for x in km)
        and all(x <= TRIP_TIME_S for x in d_start + d_end)
    )
    unmatched = [t for t in theirs if all(t is not b for _, b in pairs)]
    return {
        "count": (len(theirs), len(ours)),
        "km_share": max(km, default=0.0),
        "start_s": max(d_start, default=0.0),
        "end_s": max(d_end, default=0.0),
        "unmatched": unmatched,
        "ok": ok,
    }


def check_file(rf, agent: Path, config: Path, path: Path) -> dict:
    raw, _ = rf.load(path)
    fixes, _, _ = rf.clean(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ti_stays, _ = rf.trackintel_staypoints(fixes, include_last=False) if fixes else ([], "")
        mpd_trips, _ = rf.movingpandas_trips(fixes) if len(fixes) > 1 else ([], "")
    ref_trips, _ = rf.segment_trips(fixes) if fixes else ([], [])
    summary = drivetag_summary(agent, config, path)
    dt_stays = [
        {"start": parse_time(s["start"]), "end": parse_time(s["end"]), "lat": s["lat"], "lon": s["lon"]}
        for s in summary["stays"]
    ]
    dt_trips = [
        {"start": parse_time(t["start"]), "end": parse_time(t["end"]), "distance_km": t["distance_km"]}
        for t in summary["trips"]
    ]
    count = len(ref_trips)
    allowed = TRIP_COUNT_RANGE.get(path.name, (count, count))
    return {
        "file": path.name,
        "fixes": (len(fixes), summary["summary"]["fixes_kept"]),
        "stays": compare_stays(rf, dt_stays, ti_stays),
        "trips_ref": compare_trips(dt_trips, ref_trips, allowed),
        "trips_mpd": compare_trips(dt_trips, mpd_trips, allowed),
        "allowed": allowed,
    }


def print_agreement(rows: list[dict]) -> bool:
    print("\n== agreement: drivetag (bridge_gaps = false) vs trackintel 1.4.2 stays, reference rule and movingpandas trips")
    print(
        f"tolerances: stays exact count, times ±{STAY_TIME_S:.0f} s, centres ±{STAY_CENTRE_M:.0f} m; "
        f"trips exact count (dg100.gpx 5-7), km ±{100 * TRIP_KM_SHARE:.0f} %, ends ±{TRIP_TIME_S / 60:.0f} min"
    )
    head = (
        f"{'file':<34} {'fixes ref/dt':>13} | {'stays ti/dt':>11} {'Δstart':>7} {'Δend':>7} {'centre':>7} {'':>6}"
        f"| {'trips ref/mpd/dt':>16} {'km vs ref':>9} {'vs mpd':>7} {'ends vs ref':>11} {'vs mpd':>7} {'':>6}"
    )
    print(head)
    print("-" * len(head))
    all_ok = True
    for r in rows:
        s, tr, tm = r["stays"], r["trips_ref"], r["trips_mpd"]
        trips_ok = tr["ok"] and tm["ok"]
        all_ok &= s["ok"] and trips_ok
        print(
            f"{r['file']:<34} {r['fixes'][0]:>6}/{r['fixes'][1]:<6} | "
            f"{s['count'][0]:>5}/{s['count'][1]:<5} {s['start_s']:>6.0f}s {s['end_s']:>6.0f}s {s['centre_m']:>6.1f}m "
            f"{'agree' if s['ok'] else 'DIFFER':>6}| "
            f"{tr['count'][0]:>6}/{tm['count'][0]}/{tr['count'][1]:<6} "
            f"{100 * tr['km_share']:>8.2f}% {100 * tm['km_share']:>6.2f}% "
            f"{max(tr['start_s'], tr['end_s']):>10.0f}s {max(tm['start_s'], tm['end_s']):>6.0f}s "
            f"{'agree' if trips_ok else 'DIFFER':>6}"
        )
    for r in rows:
        for t in r["trips_ref"]["unmatched"]:
            print(
                f"  {r['file']}: reference trip {t['start']:%Y-%m-%d %H:%M:%S} -> {t['end']:%H:%M:%S} "
                f"({t['distance_km']:.3f} km) has no drivetag trip (count allowed {r['allowed'][0]}-{r['allowed'][1]})"
            )
    return all_ok


def time_trackintel(rf, path: Path, repeats: int = 3) -> dict:
    raw, _ = rf.load(path)
    fixes, _, _ = rf.clean(raw)
    pfs = rf.trackintel_positionfixes(fixes)
    runs = []
    stays = 0
    for _ in range(repeats):
        p = pfs.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            _, sp = p.generate_staypoints(**TRACKINTEL_ARGS)
            runs.append(time.perf_counter() - start)
        stays = len(sp)
    best = min(runs)
    return {"fixes": len(fixes), "stays": stays, "best_s": best, "runs_s": runs, "fixes_per_s": len(fixes) / best}


def time_drivetag(stays_bench: Path, path: Path, runs: int) -> dict:
    out = subprocess.run(
        [str(stays_bench), "--runs", str(runs), str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def print_speed(rf, stays_bench: Path, data: Path, names: list[str], runs: int) -> bool:
    import pandas as pd  # noqa: PLC0415
    import trackintel as ti  # noqa: PLC0415

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(
        f"\n== stay-point speed, same run: trackintel {ti.__version__} (pandas {pd.__version__}, Python "
        f"{platform.python_version()}) best of 3 vs drivetag StayDetector best of {runs}; {os.cpu_count()} CPU, {cpu}"
    )
    head = f"{'file':<30} {'fixes':>7} {'stays':>6} {'trackintel':>12} {'fixes/s':>10} {'drivetag':>10} {'fixes/s':>12} {'ratio':>8}"
    print(head)
    print("-" * len(head))
    ok = True
    for name in names:
        path = data / name
        ours = time_drivetag(stays_bench, path, runs)
        theirs = time_trackintel(rf, path)
        ratio = ours["fixes_per_s"] / theirs["fixes_per_s"]
        ok &= ratio >= SPEED_RATIO_TARGET
        print(
            f"{name:<30} {theirs['fixes']:>7} {theirs['stays']:>3}/{ours['stays']:<2} "
            f"{theirs['best_s'] * 1e3:>10.1f}ms {theirs['fixes_per_s']:>10.0f} "
            f"{ours['best_s'] * 1e6:>8.0f}µs {ours['fixes_per_s']:>12.0f} {ratio:>7.0f}x"
        )
    print(f"target: drivetag ≥ {SPEED_RATIO_TARGET:.0f}x trackintel: {'MET' if ok else 'MISSED'}")
    print("(fixes: trackintel gets the cleaned fixes, drivetag the decoded ones; both rates are per fix)")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data_dir(), help="folder of recordings (default %(default)s)")
    ap.add_argument("--agent", type=Path, default=ROOT / "target" / "release" / "drivetag-agent")
    ap.add_argument("--stays-bench", type=Path, default=ROOT / "target" / "release" / "examples" / "stays_bench")
    ap.add_argument("--bench-files", nargs="*", default=BENCH_FILES, help="recordings to time (default %(default)s)")
    ap.add_argument("--runs", type=int, default=100, help="drivetag timing passes, best taken (default %(default)s)")
    ap.add_argument("files", nargs="*", help="recording names in --data (default: every .nmea, .gpx and .log)")
    a = ap.parse_args(argv)
    data = a.data.resolve()
    if not (data / "tools" / "reference_figures.py").exists():
        print(f"crosscheck: no recordings at {data} (set DRIVETAG_DATA_DIR or --data)", file=sys.stderr)
        return 2
    rf = import_reference(data)
    names = a.files or sorted(p.name for p in data.iterdir() if p.suffix in SUFFIXES)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "trackintel-stays.toml"
        config.write_text("[pipeline.places]\nbridge_gaps = false\n")
        rows = []
        for name in names:
            if sys.stderr.isatty():
                print(f"checking {name} ...", file=sys.stderr, flush=True)
            rows.append(check_file(rf, a.agent, config, data / name))
    agree = print_agreement(rows)
    fast = print_speed(rf, a.stays_bench, data, a.bench_files, a.runs) if a.bench_files else True
    return 0 if agree and fast else 1


if __name__ == "__main__":
    sys.exit(main())
