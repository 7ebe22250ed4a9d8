"""Shared machinery of the ``bench_*.py`` scripts: interleaved rounds, ratios, table, JSON.

Not a benchmark itself (``nox -s bench`` runs only ``bench_*.py``). Every comparison is
*ours* against a *peer* doing the same job, in the same process and the same run:

* each round measures ours and the peer ``--repeat`` times, alternating (ours, peer, ours,
  peer, ... and peer-first on odd rounds, so neither side always runs "warm" or "second"),
  and keeps the minimum per side: the least-disturbed run of that round;
* the reported figure per side is the median of those per-round minimums, and the reported
  ratio is the median of the per-round ratios (each ratio pairs two measurements taken
  milliseconds apart, so a slow phase of the machine hits both sides of it);
* in-process loops are timed in CPU time of the process (``time.process_time``), not wall
  time: on a busy 2-core machine the scheduler takes the CPU away for milliseconds at a time,
  and wall time would charge those pauses to whichever side happened to be running;
* measurements are short (a few milliseconds, shorter than a scheduler time slice) and
  repeated, so the per-round minimum is usually a run nobody disturbed;
* absolute figures are reported too, but only ratios are compared with targets: on a noisy
  2-core machine absolute timings drift by ±40% between runs, ratios by a few percent.

A script always exits 0 after printing its table: a MISS is a finding to investigate, not a
failed build (timing assertions in tests are forbidden for the same reason).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A measurement: run the thing ``n`` times and return the seconds it took.
Measure = Callable[[int], float]


@dataclass
class Settings:
    """What the command line asked for."""

    quick: bool
    rounds: int
    repeat: int
    min_time: float  # seconds one measurement should last at least (sets the loop count)
    json_path: str | None
    verbose: bool


def parse_args(
    description: str, argv: list[str] | None = None, *, rounds: tuple[int, int] = (25, 3)
) -> Settings:
    """Parse the options every benchmark accepts; unknown ones are reported and ignored.

    ``rounds`` is the default number of rounds for a full and for a ``--quick`` run.

    ``nox -s bench -- ARGS`` passes the same ARGS to every script, so a flag meant for one
    benchmark must not make another one fail.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run, few rounds")
    parser.add_argument(
        "--rounds", type=int, help=f"interleaved rounds (default {rounds[0]}, quick {rounds[1]})"
    )
    parser.add_argument("--repeat", type=int, help="measurements per side per round")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--verbose", action="store_true", help="print extra information")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"note: ignoring arguments not meant for this script: {unknown}", file=sys.stderr)
    return Settings(
        quick=args.quick,
        rounds=max(1, args.rounds or (rounds[1] if args.quick else rounds[0])),
        repeat=max(1, args.repeat or (2 if args.quick else 7)),
        min_time=0.001 if args.quick else 0.002,
        json_path=args.json,
        verbose=args.verbose,
    )


# --------------------------------------------------------------------------------------
# Measuring


def loop(stmt: str, setup: str = "", **names: Any) -> Measure:
    """A timeit loop running ``stmt`` with ``names`` bound as fast locals.

    ``setup`` runs (untimed) before every measurement, after ``names`` are bound.

    ``timeit`` compiles ``stmt`` inline into its loop (no extra call per iteration) and turns
    the garbage collector off while timing; binding the callables in ``setup`` makes every
    name a local of that loop, so the statement costs what it costs in an application. The
    clock is the CPU time of the process (see the module docstring).
    """
    bind = [f"{name} = _names[{name!r}]" for name in names]
    timer = timeit.Timer(
        stmt,
        setup="\n".join([*bind, setup]) or "pass",
        timer=time.process_time,
        globals={"_names": names},
    )
    return timer.timeit


def calibrate(measure: Measure, min_time: float) -> int:
    """The smallest loop count (1, 2, 5, 10, 20, 50, ...) that runs for ``min_time``."""
    number = 1
    while True:
        for factor in (1, 2, 5):
            n = number * factor
            if measure(n) >= min_time:
                return n
        number *= 10


@dataclass
class Result:
    """One comparison: ours against a peer, in microseconds per operation."""

    name: str
    ours: str
    peer: str
    ours_us: float
    peer_us: float
    ratio: float  # median of the per-round ours/peer ratios (lower is better for us)
    max_ratio: float | None  # target: ours/peer must be <= this; None = informational
    target: str  # the target as the issue states it
    ours_rounds_us: list[float] = field(default_factory=list)
    peer_rounds_us: list[float] = field(default_factory=list)
    ratio_rounds: list[float] = field(default_factory=list)
    loops: tuple[int, int] = (1, 1)

    @property
    def status(self) -> str:
        if self.max_ratio is None:
            return "info"
        return "PASS" if self.ratio <= self.max_ratio else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ours": self.ours,
            "peer": self.peer,
            "ours_us": self.ours_us,
            "peer_us": self.peer_us,
            "ratio_ours_over_peer": self.ratio,
            "ratio_peer_over_ours": 1 / self.ratio if self.ratio else None,
            "target": self.target,
            "max_ratio_ours_over_peer": self.max_ratio,
            "status": self.status,
            "loops_ours_peer": list(self.loops),
            "rounds": {
                "ours_us": self.ours_rounds_us,
                "peer_us": self.peer_rounds_us,
                "ratio": self.ratio_rounds,
            },
        }


def compare(
    name: str,
    *,
    ours: tuple[str, Measure],
    peer: tuple[str, Measure],
    settings: Settings,
    max_ratio: float | None = None,
    target: str = "info",
) -> Result:
    """Measure ``ours`` and ``peer`` interleaved over ``settings.rounds`` rounds.

    Each side is a loop (``Measure(n)``) calibrated to last ``settings.min_time``; the
    figures are per call.
    """
    (ours_label, ours_measure), (peer_label, peer_measure) = ours, peer
    # Calibrating runs each side for a while, which also warms caches up.
    n_ours = calibrate(ours_measure, settings.min_time)
    n_peer = calibrate(peer_measure, settings.min_time)
    sides = ((ours_measure, n_ours, 0), (peer_measure, n_peer, 1))
    rounds: list[tuple[float, float]] = []
    for index in range(settings.rounds):
        best = [float("inf"), float("inf")]
        order = sides if index % 2 == 0 else sides[::-1]
        for _ in range(settings.repeat):
            for measure, n, slot in order:
                best[slot] = min(best[slot], measure(n) / n)
        rounds.append((best[0] * 1e6, best[1] * 1e6))
    return summarize(
        name,
        ours=ours_label,
        peer=peer_label,
        rounds_us=rounds,
        max_ratio=max_ratio,
        target=target,
        loops=(n_ours, n_peer),
    )


def interleaved(
    measures: dict[str, Measure],
    settings: Settings,
    *,
    min_time: float | None = None,
    fixed: int | None = None,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """:func:`compare` for more than two sides: per-round µs per call of every side.

    Each side is calibrated to last ``min_time`` (default ``settings.min_time``) unless
    ``fixed`` sets its loop count. Each round measures every side ``settings.repeat`` times
    in turn — the order rotates from round to round, so no side is always first — and keeps
    each side's minimum. Returns the per-round figures and the loop counts.
    """
    calibration = settings.min_time if min_time is None else min_time
    loops = {name: fixed or calibrate(measure, calibration) for name, measure in measures.items()}
    names = list(measures)
    rounds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(settings.rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        best = dict.fromkeys(names, math.inf)
        for _ in range(settings.repeat):
            for name in order:
                n = loops[name]
                best[name] = min(best[name], measures[name](n) / n)
        for name in names:
            rounds[name].append(best[name] * 1e6)
    return rounds, loops


def summarize(
    name: str,
    *,
    ours: str,
    peer: str,
    rounds_us: list[tuple[float, float]],
    max_ratio: float | None = None,
    target: str = "info",
    loops: tuple[int, int] = (1, 1),
) -> Result:
    """Turn per-round (ours, peer) figures in µs into a :class:`Result` (medians)."""
    ours_us = [o for o, _ in rounds_us]
    peer_us = [p for _, p in rounds_us]
    ratios = [o / p for o, p in rounds_us]
    return Result(
        name=name,
        ours=ours,
        peer=peer,
        ours_us=statistics.median(ours_us),
        peer_us=statistics.median(peer_us),
        ratio=statistics.median(ratios),
        max_ratio=max_ratio,
        target=target,
        ours_rounds_us=[round(v, 4) for v in ours_us],
        peer_rounds_us=[round(v, 4) for v in peer_us],
        ratio_rounds=[round(v, 4) for v in ratios],
        loops=loops,
    )


def pair_result(
    name: str,
    rounds: dict[str, list[float]],
    loops: dict[str, int],
    ours: tuple[str, str],
    peer: tuple[str, str],
    *,
    max_ratio: float | None = None,
    target: str | None = None,
) -> Result:
    """Ours' and the peer's time per call from an :func:`interleaved` group, as a Result.

    ``ours`` / ``peer`` are ``(key in rounds, label)``; ``target`` defaults to the
    ``<= max_ratio`` the result is judged by ("info" without one).
    """
    (ours_key, ours_label), (peer_key, peer_label) = ours, peer
    if target is None:
        target = "info" if max_ratio is None else f"<= {max_ratio:.2f}"
    return summarize(
        name,
        ours=ours_label,
        peer=peer_label,
        rounds_us=list(zip(rounds[ours_key], rounds[peer_key], strict=True)),
        max_ratio=max_ratio,
        target=target,
        loops=(loops[ours_key], loops[peer_key]),
    )


# --------------------------------------------------------------------------------------
# Reporting


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where the figures were measured: interpreter, machine and peer versions."""
    versions = {
        dist: installed_version(dist)
        for dist in ("utils-core", "structlog", "orjson", "rich", "typer")
    }
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "executable": sys.executable,
        "versions": versions,
        **(extra or {}),
    }


def _fmt_us(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def print_table(
    title: str, results: list[Result], settings: Settings, method: str | None = None
) -> None:
    """The human report: one line per comparison, ratio = ours/peer (lower is better)."""
    rows = [
        (
            r.name,
            _fmt_us(r.ours_us),
            _fmt_us(r.peer_us),
            f"{r.ratio:.2f}",
            r.target,
            r.status,
        )
        for r in results
    ]
    header = ("benchmark", "ours µs", "peer µs", "ours/peer", "target", "result")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 2, 3}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    print()
    if method is None:
        method = (
            f"median of {settings.rounds} interleaved rounds, min of {settings.repeat} per side "
            "per round, CPU time per call"
        )
    print(f"{title}\n({method}{', QUICK' if settings.quick else ''})")
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))
    print()
    for r in results:
        spread = ""
        if len(r.ratio_rounds) > 1:
            spread = f", ratio range {min(r.ratio_rounds):.2f}-{max(r.ratio_rounds):.2f}"
        print(f"  {r.name}: ours = {r.ours}; peer = {r.peer}{spread}")
    misses = [r.name for r in results if r.status == "MISS"]
    if misses:
        print(f"\nMISS (reported, not gating): {', '.join(misses)}")


def write_json(
    path: str, benchmark: str, results: list[Result], env: Mapping[str, Any], **extra: Any
) -> None:
    """Write ``{"benchmarks": {benchmark: ...}}`` to ``path``.

    ``nox -s bench -- --json PATH`` hands the same PATH to every script, so an existing file
    written by this harness is merged into (one key per benchmark) rather than overwritten.
    A PATH that is a directory (or ends with a slash) gets one ``<benchmark>.json`` per script.
    """
    target = Path(path)
    if path.endswith(("/", os.sep)) or target.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        target = target / f"{benchmark}.json"
    document: dict[str, Any] = {"benchmarks": {}}
    if target.is_file():
        try:
            existing = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = None
        if isinstance(existing, dict) and isinstance(existing.get("benchmarks"), dict):
            document = existing
    document["benchmarks"][benchmark] = {
        "environment": dict(env),
        "results": [r.as_json() for r in results],
        **extra,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {target}")
