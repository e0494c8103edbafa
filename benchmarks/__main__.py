"""Run every benchmark (or those named): python -m benchmarks [registry …]."""

from __future__ import annotations

import importlib
import sys

SUITES = ["registry", "codecs", "serving", "monitoring", "optimize", "placement"]


def main(argv: list[str]) -> None:
    for name in argv or SUITES:
        if name not in SUITES:
            sys.exit(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}")
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
