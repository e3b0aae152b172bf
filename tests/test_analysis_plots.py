"""analysis.plots: each plot is a PNG for a real run, None when the run has nothing to draw."""

import numpy as np
import pytest
from analysis_fixtures import make_records, shared_locust_run, write_turns

from analysis import metrics, plots, readers

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
        plots.intent_per_utterance(summary["intent"]),
        plots.chunks_distribution(run.turns),
        plots.reconnections_distribution(run.turns),
    ]
    for image in images:
        assert image is not None and image.startswith(PNG) and len(image) > 5000


def test_nothing_to_draw_gives_none(run):
    assert plots.latency_distribution(np.array([np.nan])) is None
    assert plots.users_and_failures(None, None) is None
    assert plots.intent_per_utterance({"per_utterance": []}) is None
