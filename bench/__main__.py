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

from bench._harness import RESULTS_DIR, table, write_json

# Benchmark modules in the order they run (one question each).
MODULES = [
    "bench.core_import",
    "bench.core_gatt_decode",
    "bench.core_validate_dedup",
    "bench.core_windows_rules",
    "bench.core_pipeline",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs: the whole run in under two minutes")
    parser.add_argument("--only", nargs="+", metavar="MODULE",
                        help="run only these modules (e.g. core_pipeline); the JSON then holds only their figures")
    parser.add_argument("--out", default=str(RESULTS_DIR / "latest.json"), help="where to write the JSON results")
    args = parser.parse_args(argv)
    chosen = [m for m in MODULES if not args.only or m.removeprefix("bench.") in args.only]
    results = []
    for name in chosen:
        start = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        results.extend(importlib.import_module(name).run(args.quick))
        print(f"bench: {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(table(results))
    write_json(results, pathlib.Path(args.out))
    print(f"\nwritten: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
