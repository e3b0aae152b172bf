"""analysis.readers: real Locust CSVs and the harness's turns file in, clear errors for bad files."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import copy_run, make_records, shared_locust_run, write_turns

from analysis import readers
from voiceharness.errors import AnalysisError
from voiceharness.turns import COLUMNS


@pytest.fixture(scope="module")
def locust_prefix(tmp_path_factory):
    return shared_locust_run(tmp_path_factory)


@pytest.fixture
def turns_prefix(tmp_path):
    prefix = str(tmp_path / "run")
    write_turns(prefix, make_records(200))
    return prefix


def test_real_locust_stats_rows_carry_metric_kind_and_rounded_percentiles(locust_prefix):
    rows = readers.read_stats(locust_prefix + "_stats.csv")
    kinds = {row.kind for row in rows}
    assert {"connect", "roundtrip", "intent", "ping"} <= kinds
    assert "Aggregated" not in {row.name for row in rows}
    roundtrip = next(row for row in rows if row.kind == "roundtrip")
    assert roundtrip.requests > 0 and 95.0 in roundtrip.percentiles_ms and 100.0 in roundtrip.percentiles_ms


def test_real_locust_history_failures_and_exceptions_are_read(locust_prefix):
    run = readers.read_run(locust_prefix)
    assert run.turns is None and run.stats
    assert len(run.history.timestamp) >= 2 and np.nanmax(run.history.users) == 4
    assert any("wrong_intent" in f.error for f in run.failures)
    assert any("boom" in e.message for e in run.exceptions)
    assert run.missing == [locust_prefix + "_turns.csv"]


def test_turns_file_reads_into_columns_with_nan_for_empty_cells(turns_prefix):
    turns = readers.read_turns(turns_prefix + "_turns.csv")
    records = make_records(200)
    assert len(turns) == 200
    assert np.isnan(turns.numbers["roundtrip_ms"]).sum() == sum(math.isnan(r.roundtrip_ms) for r in records)
    assert list(turns.texts["utterance_id"].decode()[:2]) == [
        records[0].utterance_id,
        records[1].utterance_id,
    ]
    assert turns.numbers["success"].sum() == sum(r.success for r in records)


def test_prefix_may_name_one_of_the_run_files(turns_prefix):
    assert readers.normalize_prefix(turns_prefix + "_turns.csv") == turns_prefix
    assert readers.normalize_prefix("r/run_stats_history.csv") == "r/run"
    assert readers.read_run(turns_prefix + "_turns.csv").turns is not None


def test_large_file_is_read_in_chunks_with_forced_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 50)
    prefix = str(tmp_path / "run")
    write_turns(prefix, make_records(420))
    turns = readers.read_turns(prefix + "_turns.csv", progress="always")
    assert len(turns) == 420 and len(turns.texts["failure"].labels) >= 2
    assert "reading run_turns.csv" in capsys.readouterr().err


# --- bad input: every message names the file and says what is wrong -------------------------


def expect_error(call, path_fragment, *words):
    with pytest.raises(AnalysisError) as caught:
        call()
    message = str(caught.value)
    assert path_fragment in message, message
    for word in words:
        assert word in message, message
    return message


def test_prefix_with_no_files(tmp_path):
    expect_error(lambda: readers.read_run(str(tmp_path / "nothing")), "nothing", "no run files")


def test_directory_instead_of_prefix(tmp_path):
    expect_error(lambda: readers.read_run(str(tmp_path)), str(tmp_path), "directory")


def test_empty_turns_file(tmp_path):
    (tmp_path / "run_turns.csv").write_text("")
    expect_error(lambda: readers.read_run(str(tmp_path / "run")), "run_turns.csv", "empty")


def test_header_only_turns_file(tmp_path):
    (tmp_path / "run_turns.csv").write_text(",".join(COLUMNS) + "\n")
    expect_error(lambda: readers.read_run(str(tmp_path / "run")), "run_turns.csv", "no turn records")


def test_truncated_turns_file_names_the_line(turns_prefix):
    path = turns_prefix + "_turns.csv"
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) - 40])
    expect_error(lambda: readers.read_run(turns_prefix), "_turns.csv", "truncated", "line 201")


def test_foreign_csv_as_turns_file(tmp_path):
    (tmp_path / "run_turns.csv").write_text("name,age\nann,3\n")
    expect_error(
        lambda: readers.read_run(str(tmp_path / "run")), "run_turns.csv", "is not a turns CSV", "name,age"
    )


def test_turns_file_missing_some_columns(turns_prefix):
    path = turns_prefix + "_turns.csv"
    text = Path(path).read_text().replace("reconnections", "reconnects", 1)
    Path(path).write_text(text)
    expect_error(lambda: readers.read_run(turns_prefix), "_turns.csv", "lacks column", "reconnections")


def test_non_number_in_a_number_column_names_line_and_column(turns_prefix):
    path = turns_prefix + "_turns.csv"
    lines = Path(path).read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[5].split(",")
    # The transcript cell holds a quoted comma, so count from the end where the numbers are.
    cells[len(cells) - (len(header) - header.index("reconnections"))] = "many"
    lines[5] = ",".join(cells)
    Path(path).write_text("\n".join(lines) + "\n")
    expect_error(
        lambda: readers.read_run(turns_prefix), "_turns.csv", "line 6", "'reconnections'", "not a number"
    )


def test_row_with_extra_fields(turns_prefix):
    path = turns_prefix + "_turns.csv"
    with open(path, "a") as file:
        file.write("1,2,3" + ",x" * 40 + "\n")
    expect_error(lambda: readers.read_run(turns_prefix), "_turns.csv", "line 202")


def test_binary_file(tmp_path):
    (tmp_path / "run_stats.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n")
    expect_error(lambda: readers.read_run(str(tmp_path / "run")), "run_stats.csv", "binary")


def test_locust_stats_with_wrong_columns(tmp_path):
    (tmp_path / "run_stats.csv").write_text("Method,Name,Error,Occurrences\nintent,x,boom,1\n")
    expect_error(lambda: readers.read_run(str(tmp_path / "run")), "run_stats.csv", "not a Locust stats CSV")


def test_locust_stats_with_a_damaged_number(locust_prefix, tmp_path):
    prefix = copy_run(locust_prefix, tmp_path)
    path = prefix + "_stats.csv"
    lines = Path(path).read_text().splitlines()
    cells = lines[1].split(",")
    cells[2] = "lots"
    lines[1] = ",".join(cells)
    Path(path).write_text("\n".join(lines) + "\n")
    expect_error(lambda: readers.read_run(prefix), "_stats.csv", "line 2", "'Request Count'")


def test_empty_optional_locust_file_is_still_an_error(locust_prefix, tmp_path):
    """A file that is there but empty is reported, not silently skipped."""
    prefix = copy_run(locust_prefix, tmp_path)
    Path(prefix + "_failures.csv").write_text("")
    expect_error(lambda: readers.read_run(prefix), "_failures.csv", "empty")


def test_history_without_aggregated_rows(locust_prefix, tmp_path):
    prefix = copy_run(locust_prefix, tmp_path)
    path = prefix + "_stats_history.csv"
    lines = [line for line in Path(path).read_text().splitlines() if "Aggregated" not in line]
    Path(path).write_text("\n".join(lines) + "\n")
    expect_error(lambda: readers.read_run(prefix), "_stats_history.csv", "Aggregated")


def test_unreadable_file_is_reported(turns_prefix):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    os.chmod(turns_prefix + "_turns.csv", 0)
    expect_error(lambda: readers.read_run(turns_prefix), "_turns.csv", "cannot be read")


# --- the newer turn columns, older files, and the resources file ------------------------------


def test_a_turns_file_without_the_per_turn_p99_column_is_read(turns_prefix):
    """The record no longer has send_lateness_p99_ms (it was the max under 100 frames)."""
    header = Path(turns_prefix + "_turns.csv").read_text().splitlines()[0].split(",")
    assert "send_lateness_p99_ms" not in header
    turns = readers.read_turns(turns_prefix + "_turns.csv")
    assert "send_lateness_p99_ms" not in turns.numbers and len(turns.numbers["send_lateness_max_ms"]) == 200


def test_an_older_turns_file_with_the_p99_column_and_without_the_newer_ones_still_loads(tmp_path):
    """A file written before the schema change: p99 column present, no pace/judge/audible columns."""
    older = [c for c in COLUMNS if c not in ("pace", "dialect", "reply_format", "intent_source", "audio_intent",
                                             "reply_transcript", "reply_text", "audible_ms", "reply_audio_ms",
                                             "reply_sample_rate_hz", "playback_stalls")]
    older.insert(older.index("send_lateness_max_ms"), "send_lateness_p99_ms")
    lines = [",".join(older)]
    for i in range(5):
        row = {name: "" for name in older}
        row.update(timestamp=str(1_700_000_000 + i), worker="h:1", user="0", utterance_id="u", expected_intent="ECHO",
                   intent="ECHO", success="1", roundtrip_ms="210.5", ping_ms="3", chunks_sent="40",
                   chunks_received="20", reconnections="0", send_lateness_p99_ms="2.0", send_lateness_max_ms="2.0")
        lines.append(",".join(row[name] for name in older))
    (tmp_path / "old_turns.csv").write_text("\n".join(lines) + "\n")
    run = readers.read_run(str(tmp_path / "old"))
    assert len(run.turns) == 5 and "pace" not in run.turns.texts
    assert list(run.turns.text("pace").decode()) == [""] * 5  # a missing text column reads as empty cells
    assert not run.turns.text_is("pace", "fast").any()


def test_the_resources_file_is_read_with_whatever_gateway_columns_it_has(turns_prefix):
    Path(turns_prefix + "_resources.csv").write_text(
        "timestamp,worker,users,worker_cpu_percent,worker_rss_mb,gateway_cpu_percent,gateway_rss_mb,"
        "gateway_tree_cpu_percent,gateway_tree_rss_mb\n"
        "100.0,h:1,10,12.5,80.1,,120.0,,300.0\n"
        "102.0,h:1,10,14.0,80.4,5.0,120.2,41.5,301.0\n"
    )
    run = readers.read_run(turns_prefix)
    resources = run.resources
    assert run.files["resources"].endswith("_resources.csv")
    assert list(resources.worker) == ["h:1", "h:1"] and list(resources.timestamp) == [100.0, 102.0]
    assert resources.numbers["gateway_tree_cpu_percent"][1] == 41.5
    assert np.isnan(resources.numbers["gateway_cpu_percent"][0])


def test_a_foreign_resources_file_is_refused_naming_it(turns_prefix):
    Path(turns_prefix + "_resources.csv").write_text("a,b\n1,2\n")
    expect_error(lambda: readers.read_run(turns_prefix), "_resources.csv", "not a resources CSV")


def test_the_gateway_scope_column_is_read_as_text(turns_prefix):
    """What the sampler writes today: gateway_scope says what the gateway's figures count."""
    Path(turns_prefix + "_resources.csv").write_text(
        "timestamp,worker,users,worker_cpu_percent,worker_rss_mb,gateway_cpu_percent,gateway_rss_mb,gateway_scope\n"
        "100.0,h:1,10,12.5,80.1,,120.0,process tree\n"
        "102.0,h:1,10,14.0,80.4,48.5,300.2,process tree\n"
        "104.0,h:1,10,14.0,80.4,,,\n"
    )
    resources = readers.read_run(turns_prefix).resources
    assert list(resources.texts["gateway_scope"]) == ["process tree", "process tree", ""]
    assert resources.numbers["gateway_cpu_percent"][1] == 48.5
