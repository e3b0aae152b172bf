"""``python -m bench capacity|processes|truth|analysis|judge|all|report [--smoke]``: run benchmarks, write results and BENCHMARKS.md.

Each benchmark writes ``bench/results/NAME.json`` (``NAME-smoke.json`` with ``--smoke``, so CI
never overwrites real figures) and ``BENCHMARKS.md`` at the repository root is regenerated
from whatever results exist. A full run repeats every measurement 5 times (``--repeat``);
the tables give the median and min-max.

    python -m bench all --nice -5          # the full set, 5 repeats each: about 1 h 40 min on 2 cores
    python -m bench capacity --nice -5     # 4 clients x N 1000-4000 x 5 repeats: about 45 min
    python -m bench processes --nice -5    # harness on 1 and 2 processes x N 2000-6000 x 5: about 32 min
    python -m bench truth --nice -5        # 12 configurations x 5 repeats: about 21 min
    python -m bench analysis               # 1,000,000 records, 5 timings: 1-3 min
    python -m bench judge                  # the reply judge on its held-out set, 3 methods x 5 voices: 15-25 min

``processes`` is the capacity benchmark for the harness alone on 1 and 2 Locust processes
(``--processes``), at larger N; it writes ``capacity-processes.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench import common, report

FULL_REPEAT = 5


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"bench: {option} {text!r}: give comma-separated whole numbers, e.g. 1000,2000") from None
    if not values or min(values) < 1:
        raise SystemExit(f"bench: {option} {text!r}: give comma-separated numbers >= 1")
    return values


def _without_note(argv: list[str]) -> list[str]:
    """The command line as the tables show it: the --note is shown above them already."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=["capacity", "processes", "truth", "analysis", "judge", "all", "report"])
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: proves the benchmark still runs")
    parser.add_argument("--n", default="", help="capacity: comma-separated stream counts (default 1000,2000,3000,4000)")
    parser.add_argument("--clients", default="",
                        help="capacity: comma-separated subset of harness,asyncio_fair,asyncio_naive,raw "
                             "(also harness_gc_cpython)")
    parser.add_argument("--processes", default="",
                        help="capacity: comma-separated Locust process counts for the harness (e.g. 1,2: "
                             "--processes P forks P workers; default 1, for 'processes' 1,2); any P > 1 writes "
                             "capacity-processes.json")
    parser.add_argument("--duration-s", type=float, default=0.0, help="seconds of each run after the ramp")
    parser.add_argument("--sink", choices=["minimal", "gateway"], default="minimal",
                        help="capacity: system under test (minimal bench/sink.py, or gateway --fast-sink)")
    parser.add_argument("--repeat", type=int, default=0,
                        help=f"runs of each measurement (default {FULL_REPEAT}; 1 with --smoke)")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the processes a benchmark starts at this niceness (e.g. -5 on a shared machine; root)")
    parser.add_argument("--note", default="",
                        help="a line printed above this run's tables (e.g. 'PROVISIONAL: shared machine')")
    args = parser.parse_args(argv)
    common.NICE = args.nice
    repeat = args.repeat or (1 if args.smoke else FULL_REPEAT)
    command = "python -m bench " + " ".join(_without_note(argv if argv is not None else sys.argv[1:]))
    suffix = "-smoke" if args.smoke else ""
    status = 0
    todo = ["capacity", "processes", "truth", "analysis", "judge"] if args.benchmark == "all" else [args.benchmark]
    for name in todo:
        if name in ("capacity", "processes"):
            from bench import capacity

            every_core = name == "processes"
            if every_core:  # the harness alone, on 1 and 2 Locust processes, at larger N
                processes = _ints(args.processes or "1,2", "--processes")
                ns = _ints(args.n, "--n") if args.n and args.benchmark != "all" else \
                    (capacity.SMOKE_N if args.smoke else capacity.PROCESSES_N)
                clients: tuple[str, ...] = ("harness",)
            else:
                processes = _ints(args.processes or "1", "--processes") if args.benchmark != "all" else (1,)
                ns = _ints(args.n, "--n") if args.n else None
                clients = tuple(args.clients.split(",")) if args.clients else capacity.CLIENTS
            result = capacity.run(
                smoke=args.smoke,
                ns=ns,
                clients=clients,
                duration_s=args.duration_s or None,
                sink=args.sink,
                repeat=repeat,
                processes=processes,
            )
            result.update(command=command, nice=args.nice, note=args.note)
            name_out = "capacity" + ("-gateway" if args.sink == "gateway" else "") + \
                ("-processes" if max(processes) > 1 else "")
            print(f"wrote {common.write_result(name_out + suffix, result)}")
        elif name == "truth":
            from bench import truth

            result = truth.run(smoke=args.smoke, duration_s=args.duration_s or None, repeat=repeat)
            result.update(command=command, nice=args.nice, note=args.note)
            print(f"wrote {common.write_result('truth' + suffix, result)}")
        elif name == "judge":
            from bench import judge

            # Accuracy is a count, not a timing: one pass (CPU per reply is a distribution over the replies).
            result = judge.run(judge.CURRENT_HELDOUT, smoke=args.smoke)
            result.update(command=command, nice=args.nice, note=args.note)
            print(f"wrote {common.write_result(f'judge-{judge.CURRENT_HELDOUT}' + suffix, result)}")
        elif name == "analysis":
            # bench/bench_analysis.py writes bench/results/analysis[-smoke].json itself.
            command_line = [common.PYTHON, str(common.REPO / "bench" / "bench_analysis.py"), "--repeat", str(repeat)]
            command_line += ["--smoke"] if args.smoke else []
            command_line += ["--note", args.note] if args.note else []
            status |= subprocess.call(command_line, cwd=common.REPO, env=common.python_env())
    if not args.smoke or args.benchmark == "report":
        path = report.write_markdown()
        print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
