"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, print a table, write
bench/results/latest.json.

Each module answers one question and measures its baseline in the same run, so the ratios
hold on any machine; absolute figures only describe the machine in the JSON's "machine".
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import time

from bench._harness import RESULTS_DIR, machine, table, write_json

# Benchmark modules in the order they run (one question each).
MODULES = [
    "bench.core_import",
    "bench.core_gatt_decode",
    "bench.core_validate_dedup",
    "bench.core_windows_rules",
    "bench.core_pipeline",
    "bench.store_insert_ceiling",
    "bench.store_pg_insert",
    "bench.store_shared_windows",
    "bench.e2e_ingest",
    "bench.faults_kill_restart",
    "bench.faults_broker_restart",
    "bench.broker_accounts",
    "bench.faults_flood",
    "bench.faults_disk_full",
    "bench.faults_shared_store",
    "bench.scale_gateways",
    "bench.store_shared_acks",
    "bench.soak",
    "bench.report_protocol",
    "bench.report_coverage",
    "bench.cli_status_once",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs: the whole run in under two minutes")
    parser.add_argument("--only", nargs="+", metavar="MODULE",
                        help="run only these modules (e.g. core_pipeline); the JSON then holds only their figures")
    parser.add_argument("--out", help="where to write the JSON results (default: bench/results/latest.json for a "
                                      "full run, bench/results/partial.json with --quick or --only)")
    parser.add_argument("--readme", metavar="PATH",
                        help="also put the table, with this command line, between the bench markers of PATH")
    args = parser.parse_args(argv)
    chosen = [m for m in MODULES if not args.only or m.removeprefix("bench.") in args.only]
    results = []
    for name in chosen:
        start = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        results.extend(importlib.import_module(name).run(args.quick))
        print(f"bench: {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(table(results))
    out = pathlib.Path(args.out or RESULTS_DIR / ("partial.json" if args.quick or args.only else "latest.json"))
    write_json(results, out)
    print(f"\nwritten: {out}", file=sys.stderr)
    if args.readme:
        command = "python -m bench " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
        update_readme(pathlib.Path(args.readme), command.strip(), table(results))
    return 0


README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(path: pathlib.Path, command: str, markdown_table: str) -> None:
    """Replace what stands between the bench markers of ``path`` with the table."""
    text = path.read_text()
    head, _, rest = text.partition(README_START)
    _, found, tail = rest.partition(README_END)
    if not found:
        raise SystemExit(f"bench: {path} has no {README_START} ... {README_END} markers")
    where = machine()
    body = (f"\n`{command}` on {where['date_utc'][:10]}, {where['cpu']}, {where['cores']} cores, "
            f"Python {where['python']}, numba {where['numba']}:\n\n{markdown_table}\n")
    path.write_text(head + README_START + body + README_END + tail)


if __name__ == "__main__":
    sys.exit(main())
