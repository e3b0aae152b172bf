"""CPU and memory over the run: each load generator, and the gateway when it ran on the same machine.

Read from ``PREFIX_resources.csv`` (written by ``voiceharness/locust/resources.py``: one sample per
load-generator process every two seconds, with the local gateway's figures beside it). A load
generator above :data:`SATURATED_CPU_PERCENT` sends late and makes the gateway look slow.

What the gateway's figures count is read from the file: its ``gateway_scope`` column says
"process tree" (the reference gateway exports its whole tree, recognition workers included) or
"main process" (any Prometheus client's ``process_cpu_seconds_total``: worker processes are not
in it). Without that column (older files) ``gateway_cpu_percent`` is the main process's; a
``gateway_tree_*`` column, where present, is the whole tree and is preferred. The summary says
which one it shows. The reply judge hears replies in processes of its own: its CPU
(``judge_cpu_percent``) is shown apart from the load generators'.
"""

from __future__ import annotations

import re

import numpy as np

from analysis.readers import Resources
from analysis.stats import Percentiles, finite, percentiles
from analysis.summary import GatewayResources, JudgeResources, ResourcesSummary, WorkerResources

# The load generator's CPU share above which its timers slip (as voiceharness/locust/resources.py warns).
SATURATED_CPU_PERCENT = 70.0
GATEWAY_CPU = re.compile(r"^gateway(_[a-z0-9_]+)?_cpu_percent$")
GATEWAY_RSS = re.compile(r"^gateway(_[a-z0-9_]+)?_rss_mb$")
TREE = "process tree"
MAIN_PROCESS = "main process"
SCOPE_NOTES = {
    MAIN_PROCESS: "the gateway's main process only (its /metrics process_cpu_seconds_total): "
    "recognition worker processes are not counted",
    TREE: "the gateway's whole process tree (main process and its workers)",
}


def gateway_scope(resources: Resources, column: str | None) -> str:
    """What the gateway's figures in ``column`` count: "process tree", "main process", or both."""
    if column and "tree" in column:
        return TREE
    scope = resources.texts.get("gateway_scope")
    if column is None or scope is None:
        return MAIN_PROCESS
    measured = ~np.isnan(resources.numbers[column])
    seen = sorted({str(value) for value in scope[measured] if value})
    return " and ".join(seen) if seen else MAIN_PROCESS


def gateway_column(resources: Resources, pattern: re.Pattern[str]) -> str | None:
    """The gateway column to show: a process-tree variant with data first, else the plain one."""
    names = [name for name in resources.numbers if pattern.match(name) and len(finite(resources.numbers[name]))]
    trees = [name for name in names if "tree" in name]
    return (trees or names or [None])[0]


def summarize_resources(resources: Resources | None) -> ResourcesSummary:
    """Per load generator and for the gateway: samples, CPU p50 and max, RSS max."""
    if resources is None:
        return ResourcesSummary(0, (), None, "no _resources.csv for this run", file_read=False)
    cpu = resources.numbers.get("worker_cpu_percent", np.empty(0))
    rss = resources.numbers.get("worker_rss_mb", np.empty(0))
    workers = []
    for name in sorted(set(resources.worker.tolist())):
        mine = resources.worker == name
        cpu_stats, rss_stats = percentiles(cpu[mine]), percentiles(rss[mine])
        workers.append(
            WorkerResources(
                worker=str(name),
                samples=int(mine.sum()),
                cpu_p50_percent=cpu_stats.p50,
                cpu_max_percent=cpu_stats.max,
                rss_max_mb=rss_stats.max,
                saturated=(cpu_stats.max or 0.0) > SATURATED_CPU_PERCENT,
            )
        )
    gateway = None
    cpu_column = gateway_column(resources, GATEWAY_CPU)
    rss_column = gateway_column(resources, GATEWAY_RSS)
    if cpu_column or rss_column:
        gateway_cpu = percentiles(resources.numbers[cpu_column]) if cpu_column else Percentiles()
        gateway_rss = percentiles(resources.numbers[rss_column]) if rss_column else Percentiles()
        scope = gateway_scope(resources, cpu_column or rss_column)
        gateway = GatewayResources(
            cpu_column=cpu_column,
            rss_column=rss_column,
            scope=scope,
            counted=SCOPE_NOTES.get(scope, f"{scope} (the samples changed scope during the run)"),
            cpu_p50_percent=gateway_cpu.p50,
            cpu_max_percent=gateway_cpu.max,
            rss_max_mb=gateway_rss.max,
        )
    judge = None
    judge_cpu = resources.numbers.get("judge_cpu_percent")
    if judge_cpu is not None and len(finite(judge_cpu)):
        judge_stats = percentiles(judge_cpu)
        judge = JudgeResources(
            judge_stats.p50,
            judge_stats.max,
            "the reply judge's own processes (speech recognition of reply audio), summed over "
            "the load generators; not in their CPU",
        )
    note = "" if len(resources.timestamp) else "the file holds no sample yet (a run shorter than 2 s)"
    if gateway is None and len(resources.timestamp):
        note = "no gateway figures: the gateway was not on this machine or its /metrics was unreachable"
    return ResourcesSummary(
        samples=len(resources.timestamp),
        workers=tuple(workers),
        gateway=gateway,
        note=note,
        judge=judge,
        saturated_percent=SATURATED_CPU_PERCENT,
    )
