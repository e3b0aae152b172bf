"""``python -m bench capacity|truth|analysis|all [--smoke]``: run benchmarks, write results and BENCHMARKS.md.

Each benchmark writes ``bench/results/NAME.json`` (``NAME-smoke.json`` with ``--smoke``, so CI
never overwrites real figures) and ``BENCHMARKS.md`` at the repository root is regenerated
from whatever results exist.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench import common, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=["capacity", "truth", "analysis", "all", "report"])
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: proves the benchmark still runs")
    parser.add_argument("--n", default="", help="capacity: comma-separated stream counts (default 250..2000)")
    parser.add_argument("--clients", default="", help="capacity: comma-separated subset of harness,harness_gc_cpython,harness_timer,asyncio,raw")
    parser.add_argument("--duration-s", type=float, default=0.0, help="seconds of each run after the ramp")
    parser.add_argument("--sink", choices=["minimal", "gateway"], default="minimal",
                        help="capacity: system under test (minimal bench/sink.py, or gateway --fast-sink)")
    parser.add_argument("--repeat", type=int, default=1, help="capacity: runs per N and client")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the processes a benchmark starts at this niceness (e.g. -5 on a shared machine; root)")
    args = parser.parse_args(argv)
    common.NICE = args.nice
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    suffix = "-smoke" if args.smoke else ""
    status = 0
    todo = ["capacity", "truth", "analysis"] if args.benchmark == "all" else [args.benchmark]
    for name in todo:
        if name == "capacity":
            from bench import capacity

            result = capacity.run(
                smoke=args.smoke,
                ns=tuple(int(x) for x in args.n.split(",")) if args.n else None,
                clients=tuple(args.clients.split(",")) if args.clients else capacity.CLIENTS,
                duration_s=args.duration_s or None,
                sink=args.sink,
                repeat=args.repeat,
            )
            result["command"], result["nice"] = command, args.nice
            name_out = "capacity" + ("-gateway" if args.sink == "gateway" else "")
            print(f"wrote {common.write_result(name_out + suffix, result)}")
        elif name == "truth":
            from bench import truth

            result = truth.run(smoke=args.smoke, duration_s=args.duration_s or None)
            result["command"], result["nice"] = command, args.nice
            print(f"wrote {common.write_result('truth' + suffix, result)}")
        elif name == "analysis":
            # Written by another engineer; it writes bench/results/analysis[-smoke].json itself.
            command = [common.PYTHON, str(common.REPO / "bench" / "bench_analysis.py")] + (["--smoke"] if args.smoke else [])
            status |= subprocess.call(command, cwd=common.REPO, env=common.python_env())
    if not args.smoke or args.benchmark == "report":
        path = report.write_markdown()
        print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
