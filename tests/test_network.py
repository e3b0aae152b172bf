"""The emulated link (voiceharness.network): exact delivery times from clock readings, and the
--network option's profiles and mixes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceharness.errors import UsageError
from voiceharness.network import PROFILES, REALTIME_PCM16_KBPS, Link, NetworkProfile, parse_network

FRAME_BYTES = 2048 + 8  # one 1,024-sample PCM16 frame on the wire: audio, 4-byte header, 4-byte mask key
FRAME_S = 0.064


def test_delay_only_delivers_each_chunk_exactly_the_delay_later_and_keeps_no_backlog():
    link = Link(one_way_delay_ms=50)
    for k in range(10):
        now = k * FRAME_S
        assert link.send(now, FRAME_BYTES) == pytest.approx(now + 0.050, abs=1e-12)
        assert link.backlog_bytes(now) == 0
    assert link.backlog_max_bytes == 0


def test_a_rate_below_real_time_queues_the_stream_exactly_as_the_token_bucket_says():
    """200 kbit/s = 25,000 B/s under 257 kbit/s of frames: once the bucket's 4,096 bytes are spent,
    frame k leaves at ((k + 1) * 2056 - 4096) / 25000 s, and the backlog is the frames not left."""
    rate_bytes_per_s = 25_000
    link = Link(rate_kbps=200, burst_bytes=4096)
    for k in range(400):
        now = k * FRAME_S
        departure = link.send(now, FRAME_BYTES)
        expected = max(now, ((k + 1) * FRAME_BYTES - 4096) / rate_bytes_per_s)
        assert departure == pytest.approx(expected, abs=1e-9), k
        waiting = sum(1 for j in range(k + 1)
                      if ((j + 1) * FRAME_BYTES - 4096) / rate_bytes_per_s > now + 1e-6)
        assert link.backlog_bytes(now + 1e-6) == waiting * FRAME_BYTES, k  # 1 µs on: no exact ties in floats
    # 400 frames (25.6 s of audio) at 200/257 of real time: the last leaves 7.2 s after it was written
    assert departure - 399 * FRAME_S == pytest.approx((400 * FRAME_BYTES - 4096) / rate_bytes_per_s - 399 * FRAME_S)
    assert departure - 399 * FRAME_S == pytest.approx(7.196, abs=0.001)
    assert link.backlog_max_bytes == waiting * FRAME_BYTES  # it only grew
    assert link.backlog_bytes(departure) == 0


def test_a_rate_above_real_time_keeps_up():
    link = Link(rate_kbps=REALTIME_PCM16_KBPS * 1.01, burst_bytes=4096, one_way_delay_ms=10)
    for k in range(1000):
        now = k * FRAME_S
        assert link.send(now, FRAME_BYTES) == pytest.approx(now + 0.010, abs=1e-9)
    assert link.backlog_max_bytes == 0


def test_a_chunk_larger_than_the_bucket_waits_for_its_excess_at_the_rate():
    link = Link(rate_kbps=8, burst_bytes=1000)  # 1,000 B/s
    assert link.send(0.0, 3000) == pytest.approx(2.0)  # 1,000 at once, 2,000 at the rate
    assert link.send(2.0, 500) == pytest.approx(2.5)  # the bucket was emptied by the big one


def test_a_stall_freezes_the_link_and_then_delivers_what_queued_in_order():
    link = Link(one_way_delay_ms=20, stall_every_s=1.0, stall_ms=200, seed="u1")
    phase = link.stall_phase_s
    assert 0 <= phase < 1.0
    in_stall = phase + 1.05  # the second stall, 50 ms in
    first = link.send(in_stall, 100)
    second = link.send(in_stall + 0.1, 100)
    assert first == pytest.approx(phase + 1.2 + 0.020)  # left when the stall ended
    assert second == pytest.approx(first)  # queued behind it, delivered with it
    assert link.backlog_bytes(in_stall + 0.1) == 200  # a stall is a backlog
    assert link.backlog_bytes(phase + 1.2) == 0
    assert link.send(phase + 1.25, 100) == pytest.approx(phase + 1.25 + 0.020)  # after it: just the delay


def test_the_same_seed_gives_the_same_link_and_another_seed_another():
    profile = PROFILES["congested-wifi"]

    def deliveries(seed: str) -> list[float]:
        up, _down = profile.links(seed)
        return [up.send(k * FRAME_S, FRAME_BYTES) for k in range(200)]

    assert deliveries("user-3/0") == deliveries("user-3/0")
    assert deliveries("user-3/0") != deliveries("user-4/0")


@given(st.lists(st.tuples(st.floats(0, 0.2), st.integers(0, 6000)), min_size=1, max_size=60),
       st.sampled_from(sorted(PROFILES)), st.text(max_size=5))
def test_a_link_never_reorders_never_delivers_early_and_never_beats_its_rate(writes, name, seed):
    profile = PROFILES[name]
    link, _ = profile.links(seed)
    now, previous = 0.0, -math.inf
    departures = []
    for gap_s, nbytes in writes:
        now += gap_s
        departure = link.departure(now, nbytes)
        delivery = link.send(now, nbytes)
        assert departure >= now
        assert delivery >= departure + profile.one_way_delay_ms / 1000 - 1e-12
        assert delivery >= previous  # monotone: a TCP stream's order is kept
        previous = delivery
        departures.append((departure, nbytes))
    # No interval lets more through than the bucket plus the rate (the token bucket's promise).
    rate = profile.uplink_kbps * 125
    for i, (start, _) in enumerate(departures):
        for end, _ in departures[i:]:
            through = sum(n for at, n in departures if start <= at <= end)
            assert through <= profile.burst_bytes + rate * (end - start) + max(n for _, n in departures) + 1e-6


def test_named_profiles_are_documented_and_3g_and_congested_wifi_cannot_carry_real_time_pcm16():
    for profile in PROFILES.values():
        assert profile.source, profile.name
    assert {"wifi", "4g", "3g", "congested-wifi", "lossy"} <= set(PROFILES)
    assert PROFILES["3g"].uplink_kbps < REALTIME_PCM16_KBPS
    assert PROFILES["congested-wifi"].uplink_kbps < REALTIME_PCM16_KBPS
    assert PROFILES["4g"].uplink_kbps > REALTIME_PCM16_KBPS


# ----------------------------------------------------------------------------- --network


def test_a_mix_assigns_users_in_its_proportions_exactly_not_by_chance():
    mix = parse_network("wifi:70,4g:25,3g:5")
    assert mix.names == ("wifi", "4g", "3g")
    names = [mix.profile_for(n).name for n in range(300)]
    assert [names[:100].count(name) for name in mix.names] == [70, 25, 5]
    for count in range(1, 301):  # every prefix of the users is within one user of the proportion
        for name, weight in zip(mix.names, mix.weights):
            assert abs(names[:count].count(name) - count * weight / 100) < 1, (count, name)


def test_one_profile_and_none():
    assert parse_network("3g").profile_for(7) is PROFILES["3g"]
    assert parse_network(" 3G ").profile_for(0) is PROFILES["3g"]
    assert parse_network("") is None
    assert parse_network("none") is None


def test_a_profile_of_ones_own_from_its_figures():
    mix = parse_network("uplink_kbps=200,one_way_delay_ms=50")
    assert mix.profile_for(0) == NetworkProfile("custom", uplink_kbps=200, one_way_delay_ms=50,
                                                source="--network, given figures")


@pytest.mark.parametrize(("text", "says"), [
    ("5g", ["--network", "'5g'", "wifi, 4g, 3g, congested-wifi, lossy"]),
    ("wifi:70,4g:x", ["--network", "'x'", "whole number"]),
    ("wifi:0,3g:5", ["--network", "wifi", "1 or more"]),
    ("wifi:50,wifi:50", ["twice"]),
    ("uplink=200", ["'uplink'", "uplink_kbps"]),
    ("uplink_kbps=fast", ["uplink_kbps='fast'", "not a number"]),
    ("uplink_kbps=-1", ["0 or more"]),
])
def test_a_bad_network_option_says_what_is_wrong_and_what_is_valid(text, says):
    with pytest.raises(UsageError) as raised:
        parse_network(text)
    for part in says:
        assert part in str(raised.value), str(raised.value)


def test_the_option_reaches_the_runs_configuration_from_the_command_line_and_as_a_library():
    from voiceharness.locust import options

    config = options.config_from_arguments(network="wifi:3,3g:1")
    assert config.network.names == ("wifi", "3g") and config.network.weights == (3, 1)
    assert "network wifi 3/4, 3g 1/4" in config.describe()
    assert options.config_from_arguments().network is None  # the default: the machine's own link
    parsed = options.plain_parser().parse_args(["--network", "congested-wifi"])
    assert options.resolve(parsed).network.profile_for(5).name == "congested-wifi"
    with pytest.raises(UsageError, match="--network"):
        options.config_from_arguments(network="4g:1,edge:1")
