"""voiceharness.turns: one row per turn, the same bytes whichever way the writer is fed."""

from __future__ import annotations

import csv
import math

from voiceharness.turns import COLUMNS, TurnRecord, TurnWriter, record_row


def _records() -> list[TurnRecord]:
    ok = TurnRecord(timestamp=1.5, worker="h:1", user=3, utterance_id="greet_1", expected_intent="GREETING",
                    intent="GREETING", confidence=0.93, transcript='hello, "jarvis"', success=True,
                    roundtrip_ms=312.345678, chunks_sent=21, reply_complete=True)
    failed = TurnRecord(user=4, failure="no_intent", failure_detail="no intent within 10000 ms", close_code=1006,
                        roundtrip_ms=math.nan)
    return [ok, failed]


def test_rows_made_once_write_the_same_file_as_records(tmp_path):
    records = _records()
    with open(tmp_path / "a_turns.csv", "w", newline="", encoding="utf-8") as file:  # csv's own DictWriter
        reference = csv.DictWriter(file, fieldnames=COLUMNS)
        reference.writeheader()
        reference.writerows(record_row(r) for r in records)
    by_row = TurnWriter(tmp_path / "b_turns.csv")
    by_row.write_rows([record_row(r) for r in records])
    by_row.close()
    assert (tmp_path / "a_turns.csv").read_bytes() == (tmp_path / "b_turns.csv").read_bytes()
    assert by_row.count == 2
    by_record = TurnWriter(tmp_path / "c_turns.csv")
    by_record.write_many(records)
    by_record.close()
    assert (tmp_path / "c_turns.csv").read_bytes() == (tmp_path / "a_turns.csv").read_bytes()


def test_a_row_missing_a_column_is_written_with_that_cell_empty(tmp_path):
    row = record_row(_records()[0])
    del row["transcript"]
    writer = TurnWriter(tmp_path / "c_turns.csv")
    writer.write_rows([row])
    writer.close()
    with open(tmp_path / "c_turns.csv", newline="", encoding="utf-8") as file:
        (read,) = list(csv.DictReader(file))
    assert list(read) == list(COLUMNS)
    assert read["transcript"] == "" and read["roundtrip_ms"] == "312.346" and read["success"] == "1"


def test_no_per_turn_p99_send_lateness_column_only_the_latest_frame():
    """Under 100 frames a per-turn p99 is the maximum: the record keeps the maximum, under its own name."""
    assert "send_lateness_p99_ms" not in COLUMNS and "send_lateness_max_ms" in COLUMNS
    record = TurnRecord(send_lateness_max_ms=4.25)
    row = record_row(record)
    assert list(row) == list(COLUMNS) and row["send_lateness_max_ms"] == 4.25
