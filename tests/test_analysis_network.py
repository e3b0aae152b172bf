"""The analysis by --network profile: every band again over each profile's turns, and the uplink
status judged on the machine's own link only (an emulated link's backlog is the profile's doing)."""

from __future__ import annotations

import math

from analysis_fixtures import make_records, write_turns

from analysis import metrics, readers, report_html, terminal
from voiceharness.turns import evolve


def _shaped(records, profiles):
    """Give the records profiles in turn, the 3g ones a 600 ms backlog and 1.5 s more roundtrip."""
    out = []
    for i, record in enumerate(records):
        profile = profiles[i % len(profiles)]
        slow = profile == "3g"
        out.append(evolve(record, network_profile=profile,
                          uplink_backlog_ms=600.0 if slow else 0.0, uplink_backlog_max_ms=640.0 if slow else 0.0,
                          roundtrip_ms=record.roundtrip_ms + (1500 if slow else 0) if not math.isnan(record.roundtrip_ms)
                          else record.roundtrip_ms))
    return out


def test_every_band_is_broken_down_by_profile_and_the_terminal_and_html_show_it(tmp_path):
    records = _shaped(make_records(300, fail_share=0.0, wrong_share=0.0), ["wifi", "3g", "4g"])
    write_turns(tmp_path / "run", records)
    run = readers.read_run(str(tmp_path / "run"))
    summary = metrics.summarize(run)
    by_name = {entry.profile: entry for entry in summary.by_network}
    assert list(by_name) == ["3g", "4g", "wifi"]
    assert [by_name[name].turns for name in ("3g", "4g", "wifi")] == [100, 100, 100]
    assert set(by_name["3g"].metrics) == set(summary.metrics)  # every band
    slow, fast = by_name["3g"].metrics["roundtrip"].percentiles.p50, by_name["wifi"].metrics["roundtrip"].percentiles.p50
    assert slow - fast > 1000, (slow, fast)
    assert by_name["3g"].uplink_backlog.p50_ms == 600 and by_name["3g"].uplink_backlog_max_p95_ms == 640
    assert by_name["wifi"].uplink_backlog.p50_ms == 0
    # the emulated backlog is not blamed on the machine's link
    assert summary.uplink_backlog.status == "unknown" and "--network" in summary.uplink_backlog.note
    assert not any(text.startswith("uplink slower") for text in summary.verdict.warnings)
    text = terminal.render(summary)
    assert "By network profile" in text
    rows = {line.split()[0]: line.split() for line in text[text.index("By network profile"):].splitlines()[3:6]}
    assert rows["3g"][1] == "100" and rows["wifi"][1] == "100", rows
    html = report_html.render([(run, summary)])
    section = html[html.index('id="by-network-'):]
    assert "<td>3g</td>" in section and "<td>wifi</td>" in section and "<td>4g</td>" in section


def test_a_run_without_network_has_no_breakdown_and_judges_its_uplink_as_before(tmp_path):
    records = [evolve(r, uplink_backlog_ms=400.0) for r in make_records(50, fail_share=0.0)]  # a slow machine link
    write_turns(tmp_path / "run", records)
    summary = metrics.summarize(readers.read_run(str(tmp_path / "run")))
    assert summary.by_network == ()
    assert "By network profile" not in terminal.render(summary)
    assert summary.uplink_backlog.status == "backlogged" and summary.uplink_backlog.turns == 50


def test_unshaped_turns_beside_shaped_ones_keep_the_machine_uplink_status(tmp_path):
    records = _shaped(make_records(100, fail_share=0.0, wrong_share=0.0), ["", "3g"])
    write_turns(tmp_path / "run", records)
    summary = metrics.summarize(readers.read_run(str(tmp_path / "run")))
    assert [entry.profile for entry in summary.by_network] == ["3g", ""]
    assert summary.uplink_backlog.status == "real time"
    assert summary.uplink_backlog.turns == 50


def test_report_json_has_the_breakdown_only_when_a_profile_was_used(tmp_path):
    import json

    from analysis import exports

    write_turns(tmp_path / "plain", make_records(20))
    write_turns(tmp_path / "shaped", _shaped(make_records(20, fail_share=0.0), ["3g"]))
    plain, shaped = (json.loads(exports.to_json([metrics.summarize(readers.read_run(str(tmp_path / name)))]))["runs"][0]
                     for name in ("plain", "shaped"))
    assert "by_network" not in plain
    [entry] = shaped["by_network"]
    assert entry["profile"] == "3g" and entry["turns"] == 20
    assert entry["uplink_backlog"]["p50_ms"] == 600 and entry["metrics"]["roundtrip"]["band"]
