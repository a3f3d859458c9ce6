"""`python -m benchmarks [--quick] [--sections quality,speed,storage,ledger,scaling] [--out FILE] [--report-only]`

Runs the chosen sections (each saves its raw numbers under benchmarks/results/), then writes BENCHMARKS.md and the
plots under benchmarks/plots/ from every saved section, so a partial rerun keeps the other sections' numbers.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchmarks.common import PLOTS_DIR, REPO_ROOT, RESULTS_DIR, load_results, save_results, saved_sections, say
from benchmarks.real_c0 import SECTION as C0_SECTION
from benchmarks.real_key_space import RESULTS_NAME as KEY_SPACE_SECTION
from benchmarks.real_sequence import RESULTS_PREFIX as SEQUENCE_PREFIX
from benchmarks.real_trace import SECTION as TRACE_SECTION
from benchmarks.report import SECTIONS, write_report

QUICK_LEDGER_VERSIONS = 5_000
FULL_LEDGER_VERSIONS = 100_000
QUICK_LEDGER_APPENDS = 300
# Measured by scripts of their own (too big for `make bench`, or needing a server), reported here.
# (Besides: every real_sequence results file, one per method and one per other round size it was run at.)
EXTRA_RESULTS = ("checkout_scale", "spread", "spread-sweep", "remote_store", "from_worlds", "storage_real",
                 "speed_reference_real", TRACE_SECTION, C0_SECTION, KEY_SPACE_SECTION)
REAL_LIFECYCLE_PREFIX = "real_lifecycle-"  # one file per model and size (`python -m benchmarks.real_lifecycle`)


def _quality(quick: bool) -> dict[str, Any]:
    from benchmarks import quality

    return quality.run(quick=quick)


def _speed(quick: bool) -> dict[str, Any]:
    from benchmarks import lifecycle_speed

    return lifecycle_speed.run(quick=quick)


def _storage(quick: bool) -> dict[str, Any]:
    from benchmarks import storage

    return storage.run(quick=quick)


def _ledger(quick: bool) -> dict[str, Any]:
    from benchmarks import ledger_queries

    if quick:
        return ledger_queries.run(versions=QUICK_LEDGER_VERSIONS, backend="both", appends=QUICK_LEDGER_APPENDS)
    return ledger_queries.run(versions=FULL_LEDGER_VERSIONS, backend="both")


def _scaling(quick: bool) -> dict[str, Any]:
    from benchmarks import lifecycle_scaling

    return lifecycle_scaling.run(quick=quick)


def _world(quick: bool) -> dict[str, Any]:
    from benchmarks import world_protocol

    return world_protocol.run(quick=quick)


RUNNERS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "quality": _quality, "world": _world, "speed": _speed, "storage": _storage, "ledger": _ledger,
    "scaling": _scaling,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short configuration (a few minutes)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--out", default=str(REPO_ROOT / "BENCHMARKS.md"), help="report file to write")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from saved results")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    failed = []
    if not args.report_only:
        for section in chosen:
            say(f"section {section} ({'quick' if args.quick else 'full'})")
            started = time.perf_counter()
            try:
                data = RUNNERS[section](args.quick)
            except Exception:  # one broken section must not lose the others' numbers
                traceback.print_exc()
                failed.append(section)
                continue
            path = save_results(section, data, args.quick, time.perf_counter() - started)
            say(f"section {section} done in {time.perf_counter() - started:.0f}s -> {path}")
    saved = (*saved_sections(SEQUENCE_PREFIX), *saved_sections(REAL_LIFECYCLE_PREFIX))
    results = {section: record for section in (*SECTIONS, *EXTRA_RESULTS, *saved)
               if (record := load_results(section, RESULTS_DIR))}
    out = write_report(results, args.out, PLOTS_DIR)
    say(f"wrote {out}" + (f"; sections that failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
