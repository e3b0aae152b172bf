"""Analysis of a finished load run: the usage guide's "Interpreting the metrics", automated.

A run leaves files under one prefix (Locust's ``--csv PREFIX``)::

    PREFIX_stats.csv          Locust: one row per (Type, Name); Type is the metric kind
    PREFIX_stats_history.csv  Locust: users, requests/s and failures/s over time
    PREFIX_failures.csv       Locust: failed requests grouped by error
    PREFIX_exceptions.csv     Locust: errors raised in user code
    PREFIX_turns.csv          the harness: one unrounded record per turn
    PREFIX_run.json           the harness: turns started vs recorded, frame-level send lateness
    PREFIX_resources.csv      the harness: CPU and memory of the load generators and a local gateway

Command line (exit 0 ok, 1 a gate failed, 2 bad input or usage)::

    python -m analysis results/run
    python -m analysis results/run --gate 'roundtrip.p95<500' --gate 'intent.accuracy>=0.98'
    python -m analysis results/baseline results/candidate          # comparison

The layers, each importable without Locust:

* :mod:`analysis.readers`     files -> :class:`~analysis.readers.Run` (columnar numpy arrays)
* :mod:`analysis.metrics`     Run -> :class:`~analysis.summary.RunSummary` (percentiles, bands,
  accuracy, diagnoses...), with :mod:`analysis.judge` (how intents were judged),
  :mod:`analysis.replies` (audible time, reply audio) and :mod:`analysis.resources` (CPU and
  memory); numeric helpers in :mod:`analysis.stats`
* :mod:`analysis.summary`     the summary's frozen records, and their report.json form
* :mod:`analysis.compare`     summaries -> a :class:`~analysis.compare.Comparison` of a baseline and a candidate
* :mod:`analysis.gate`        ``roundtrip.p95<500`` expressions -> checks
* :mod:`analysis.terminal`    summary -> text;   :mod:`analysis.report_html` -> report.html
* :mod:`analysis.plots`       matplotlib (Agg) figures as PNG bytes
* :mod:`analysis.exports`     report.json and JUnit XML
* :mod:`analysis.cli`         the command line that ties them together
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Run", "read_run", "summarize"]

_PUBLIC = {"Run": "analysis.readers", "read_run": "analysis.readers", "summarize": "analysis.metrics"}


def __getattr__(name: str) -> Any:
    """The public API, imported on first use: a process that only needs the verdict
    (:mod:`analysis.verdict`, the web UI's Voice quality tab) does not load pandas."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
