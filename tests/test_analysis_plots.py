"""analysis.plots: each plot is a PNG for a real run, None when the run has nothing to draw."""

from dataclasses import replace

import numpy as np
import pytest
from analysis_fixtures import make_records, shared_locust_run, write_turns

from analysis import metrics, plots, readers
from analysis.summary import IntentSummary, UtteranceAccuracy

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plots")
    prefix = str(directory / "run")
    write_turns(prefix, make_records(500))
    return readers.read_run(prefix)


def test_every_plot_is_a_png(run, tmp_path_factory):
    summary = metrics.summarize(run)
    history = readers.read_run(shared_locust_run(tmp_path_factory)).history
    images = [
        plots.roundtrip_over_time(run.turns),
        plots.latency_distribution(run.turns.numbers["ping_ms"]),
        plots.users_and_failures(history, None),
        plots.users_and_failures(None, run.turns),
        plots.intent_per_utterance(summary.intent),
        plots.chunks_distribution(run.turns),
        plots.reconnections_distribution(run.turns),
    ]
    for image in images:
        assert image is not None and image.startswith(PNG) and len(image) > 5000


def test_nothing_to_draw_gives_none(run):
    assert plots.latency_distribution(np.array([np.nan])) is None
    assert plots.users_and_failures(None, None) is None
    assert plots.intent_per_utterance(IntentSummary("turns", 0, 0, None, per_utterance=())) is None


# --- the plots as a reader sees them: axes scaled to the data, lines that differ -----------------


def test_the_latency_axis_is_scaled_to_the_data_and_names_the_bands_inside(tmp_path):
    figure = plots.latency_figure(np.linspace(0.4, 7.0, 90))  # a loopback run: every ping under 10 ms
    axis = figure.axes[0]
    assert 7.0 <= axis.get_xlim()[1] < 10.0  # not 0-220 ms with everything in the first bin
    assert axis.get_title() == "Latency, bands in view: excellent (< 50 ms)"
    assert not [line for line in axis.get_lines() if line.get_xdata()[0] in (50, 100, 200)]
    wide = plots.latency_figure(np.linspace(5, 140, 200)).axes[0]
    assert "good (50 - 100 ms)" in wide.get_title() and "average" in wide.get_title()
    assert "slow" not in wide.get_title()


def test_roundtrip_over_time_has_distinct_percentile_lines_the_slowest_turn_and_fast_turns_apart(tmp_path):
    records = make_records(377, fast_share=0.08, fail_share=0.0)
    slowest = max(range(len(records)), key=lambda i: records[i].roundtrip_ms if records[i].pace == "realtime" else 0)
    records[slowest] = replace(records[slowest], roundtrip_ms=669.0 * 2)
    prefix = str(tmp_path / "run")
    write_turns(prefix, records)
    figure = plots.roundtrip_over_time_figure(readers.read_run(prefix).turns)
    axis = figure.axes[0]
    lines = {line.get_label(): line.get_ydata() for line in axis.get_lines() if line.get_label() in ("p50", "p95", "p99")}
    assert set(lines) == {"p50", "p95", "p99"}
    assert (lines["p95"] > lines["p50"]).all() and (lines["p99"] > lines["p95"]).all()
    assert axis.get_ylim()[1] > 1338.0  # the slowest turn is inside the axis
    assert any(text.get_text() == "slowest 1338 ms" for text in axis.texts)
    labels = axis.get_legend_handles_labels()[1]
    assert "fast-paced (not banded)" in labels and any(label.startswith("slowest 1 %") for label in labels)


def test_intent_per_utterance_draws_only_the_utterances_below_100_percent():
    def utterances(*rows):  # (utterance, turns, correct, accuracy)
        return IntentSummary("turns", 0, 0, None, per_utterance=tuple(
            UtteranceAccuracy(name, None, turns, correct, accuracy, None, 0) for name, turns, correct, accuracy in rows
        ))  # fmt: skip

    perfect = utterances(*((f"u{i}", 9, 9, 1.0) for i in range(40)))
    assert plots.intent_per_utterance(perfect) is None
    assert plots.intent_summary_line(perfect) == "all 40 utterances at 100 % (360 judged turns)"
    some = utterances(("bad", 10, 7, 0.7), *((f"u{i}", 9, 9, 1.0) for i in range(40)))
    image = plots.intent_per_utterance(some)
    assert image is not None and image.startswith(PNG)
    assert plots.intent_summary_line(some) == "40 of 41 utterances at 100 %; the others are drawn"


def test_resources_plot_draws_each_load_generator_and_the_gateway_preferring_its_process_tree(tmp_path):
    prefix = str(tmp_path / "run")
    write_turns(prefix, make_records(20))
    (tmp_path / "run_resources.csv").write_text(
        "timestamp,worker,users,worker_cpu_percent,worker_rss_mb,gateway_cpu_percent,gateway_rss_mb,"
        "gateway_tree_cpu_percent,gateway_tree_rss_mb\n"
        "100,a:1,5,10,80,,120,,300\n100.5,b:2,5,20,90,,120,,300\n"
        "102,a:1,5,12,81,5,121,45,310\n102.5,b:2,5,25,91,5,121,46,311\n"
    )
    resources = readers.read_run(prefix).resources
    cpu_axis, rss_axis = plots.resources_figure(resources).axes
    labels = [line.get_label() for line in cpu_axis.get_lines()]
    assert "load generator a:1" in labels and "load generator b:2" in labels and "gateway (process tree)" in labels
    gateway = next(line for line in cpu_axis.get_lines() if line.get_label() == "gateway (process tree)")
    assert list(gateway.get_ydata()) == [45.0, 46.0]
    assert [line.get_label() for line in rss_axis.get_lines()][-1] == "gateway (process tree)"
    assert plots.resources_figure(None) is None
