"""Whole-process import time: ``python -c "import utils.core"`` vs ``import structlog``.

Run with ``nox -s bench`` or ``python benchmarks/bench_import.py [--quick] [--rounds N]
[--json PATH] [--verbose]``. Each round starts three fresh interpreters of this environment
(``sys.executable``) per statement, in a rotating order: one importing utils.core, one
importing structlog (utils-core's only required dependency, so the ratio is >= 1 by
construction), one doing nothing (interpreter start-up, to show the net import cost), and the
two imports again with rich blocked (structlog imports rich whenever it is installed, and
rich dominates both sides). Default 30 rounds, 5 with ``--quick``. Reported: medians of
wall-clock time (the target, <= 1.3x) and of the child's CPU time (user + sys, steadier on a
busy machine), and with ``--verbose`` the ten modules with the most *self* import time under
``python -X importtime -c "import utils.core"`` plus the self time of utils.core's own modules.

The first runs write the ``.pyc`` files of a freshly installed wheel; they are warm-up runs
and not measured.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

from _harness import (
    Result,
    Settings,
    environment,
    installed_version,
    parse_args,
    print_table,
    summarize,
    write_json,
)

try:
    import resource
except ImportError:  # Windows: no getrusage, wall-clock only
    resource = None  # type: ignore[assignment]

OURS = "import utils.core"
PEER = "import structlog"
BASELINE = "pass"
# structlog.dev imports rich (console, traceback, pretty; pygments) when it is importable, and
# that dominates both sides. Setting sys.modules["rich"] to None makes `import rich` raise
# ImportError, which structlog handles: the cost in an environment without rich.
NO_RICH = "import sys; sys.modules['rich'] = None; "
OURS_NO_RICH = NO_RICH + OURS
PEER_NO_RICH = NO_RICH + PEER

PROBE = """
import sys
{statement}
heavy = ("rich", "typer", "asyncio", "orjson", "pydantic", "prometheus_client")
loaded = [name for name, module in sys.modules.items() if module is not None]
print(len(loaded), *sorted(m for m in heavy if m in loaded))
"""


def _child_cpu() -> float:
    if resource is None:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(statement: str) -> tuple[float, float]:
    """Start ``python -c statement``; return (wall seconds, child CPU seconds)."""
    cpu_before = _child_cpu()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    wall = time.perf_counter() - start
    return wall, _child_cpu() - cpu_before


def probe(statement: str) -> dict[str, Any]:
    """How many modules ``statement`` leaves loaded and which heavy ones among them."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(statement=statement)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {"modules": int(out[0]), "heavy": out[1:]}


def import_location() -> str:
    return subprocess.run(
        [sys.executable, "-c", "import utils.core as m; print(m.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def importtime(statement: str, runs: int) -> list[dict[str, Any]]:
    """Modules by median self time under ``-X importtime`` over ``runs`` runs, largest first."""
    samples: dict[str, list[tuple[int, int]]] = {}
    for _ in range(runs):
        stderr = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            check=True,
            capture_output=True,
            text=True,
        ).stderr
        for line in stderr.splitlines():
            # "import time:   self [us] |  cumulative | imported package"
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
            samples.setdefault(name.strip(), []).append(
                (int(self_us.strip()), int(cumulative_us.strip()))
            )
    rows = [
        {
            "module": name,
            "self_us": statistics.median(s for s, _ in values),
            "cumulative_us": statistics.median(c for _, c in values),
        }
        for name, values in samples.items()
    ]
    rows.sort(key=lambda row: row["self_us"], reverse=True)
    return rows


def run(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    statements = (OURS, PEER, BASELINE, OURS_NO_RICH, PEER_NO_RICH)
    for _ in range(2):  # warm-up: bytecode compilation, disk cache
        for statement in statements:
            run_once(statement)

    wall: dict[str, list[float]] = {s: [] for s in statements}
    cpu: dict[str, list[float]] = {s: [] for s in statements}
    for index in range(settings.rounds):
        shift = index % len(statements)  # rotate: each goes first, second and last in turn
        for statement in statements[shift:] + statements[:shift]:
            w, c = run_once(statement)
            wall[statement].append(w * 1e6)
            cpu[statement].append(c * 1e6)

    results = [
        summarize(
            "import, wall clock, whole process",
            ours=f'python -c "{OURS}"',
            peer=f'python -c "{PEER}"',
            rounds_us=list(zip(wall[OURS], wall[PEER], strict=True)),
            max_ratio=1.3,
            target="<= 1.30",
        )
    ]
    if resource is not None:
        results.append(
            summarize(
                "import, child CPU, whole process",
                ours=f'python -c "{OURS}" (user+sys)',
                peer=f'python -c "{PEER}" (user+sys)',
                rounds_us=list(zip(cpu[OURS], cpu[PEER], strict=True)),
            )
        )
    results.append(
        summarize(
            "import, wall clock, rich blocked",
            ours=f'python -c "{OURS_NO_RICH}"',
            peer=f'python -c "{PEER_NO_RICH}"',
            rounds_us=list(zip(wall[OURS_NO_RICH], wall[PEER_NO_RICH], strict=True)),
        )
    )
    # Net of interpreter start-up: each round's empty interpreter is subtracted from that
    # round's imports (clamped, so a lucky round cannot give a negative cost).
    results.append(
        summarize(
            "import, wall clock, net of start-up",
            ours=f"{OURS} minus python -c pass",
            peer=f"{PEER} minus python -c pass",
            rounds_us=[
                (max(o - b, 1.0), max(p - b, 1.0))
                for o, p, b in zip(wall[OURS], wall[PEER], wall[BASELINE], strict=True)
            ],
        )
    )
    extra: dict[str, Any] = {
        "startup_wall_us": statistics.median(wall[BASELINE]),
        "startup_cpu_us": statistics.median(cpu[BASELINE]) if resource is not None else None,
        "modules": {
            statement: probe(statement) for statement in (OURS, PEER, OURS_NO_RICH, PEER_NO_RICH)
        },
        "utils_core_from": import_location(),
    }
    if settings.verbose:
        rows = importtime(OURS, runs=3 if settings.quick else 7)
        extra["importtime_top10"] = rows[:10]
        extra["importtime_utils"] = [row for row in rows if row["module"].startswith("utils")]
    return results, extra


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0], rounds=(30, 5))
    results, extra = run(settings)
    env = environment({"rich_installed": installed_version("rich") is not None})
    print_table(
        f"bench_import  Python {env['python']}, {env['cpus']} CPUs, structlog "
        f"{env['versions']['structlog']}, rich {env['versions']['rich']}",
        results,
        settings,
        method=f"median of {settings.rounds} rounds, fresh interpreters in rotating order",
    )
    print(f"\n  interpreter start-up alone (python -c pass): {extra['startup_wall_us']:,.0f} µs")
    for statement, info in extra["modules"].items():
        heavy = ", ".join(info["heavy"]) or "none"
        print(f"  {statement}: {info['modules']} modules loaded; of note: {heavy}")
    print(f"  utils.core imported from {os.path.dirname(extra['utils_core_from'])}")
    if "importtime_top10" in extra:
        print(f'\n  python -X importtime -c "{OURS}": top 10 by self time (median)')
        print(f"  {'self µs':>9}  {'cumul. µs':>9}  module")
        for row in extra["importtime_top10"]:
            print(f"  {row['self_us']:>9,.0f}  {row['cumulative_us']:>9,.0f}  {row['module']}")
        own = extra["importtime_utils"]
        total = sum(row["self_us"] for row in own)
        print(f"\n  utils.* modules: {len(own)}, {total:,.0f} µs self time in all")
        for row in own:
            print(f"  {row['self_us']:>9,.0f}  {row['cumulative_us']:>9,.0f}  {row['module']}")
    if settings.json_path:
        write_json(settings.json_path, "import", results, env, **extra)
    return 0  # reports, never gates


if __name__ == "__main__":
    sys.exit(main())
