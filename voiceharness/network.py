"""Network profiles: the link a simulated user is on, emulated by the harness itself (no root).

Sans-I/O: a :class:`Link` is fed clock readings and byte counts and says when those bytes reach
the far end; it owns no socket and no clock. The Locust transport
(:mod:`voiceharness.locust.transport`) puts one link in each direction of a shaped connection:
what the application writes goes out at the link's delivery time, what the socket reads is
handed to the session at its delivery time. See docs/networks.md for what is shaped, how the
roundtrip is defined on a shaped link, and where each profile's figures come from.

One direction of a link, in order:

1. **rate** — a token bucket of ``rate_kbps`` (1 kbit = 1,000 bits) holding ``burst_bytes``: a
   chunk leaves once the bucket holds it (a chunk larger than the bucket leaves when the bucket
   is full plus the time the excess takes at the rate). FIFO: a chunk never leaves before the
   one written before it. Bytes that have not left are the link's **backlog** (what a real
   client's modem or send queue would hold).
2. **stalls** — every ``stall_every_s`` (at a phase drawn once per link from its seed) the link
   freezes for ``stall_ms``: nothing leaves during a stall; what queued leaves when it ends.
3. **delay** — ``one_way_delay_ms`` plus a jitter drawn uniformly in ``[0, jitter_ms]`` per chunk
   (seeded), but never earlier than the chunk before it: jitter cannot reorder a TCP stream.

Nothing is dropped: a TCP stream's losses show as retransmission stalls, which is what
``stall_ms`` models.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from voiceharness.errors import UsageError

__all__ = ["PROFILES", "Link", "NetworkProfile", "ProfileMix", "parse_network"]

# Real-time PCM16 at 16 kHz as WebSocket frames of 1,024 samples: 2,048 bytes of audio, a 4-byte
# header and a 4-byte mask key every 64 ms = 257 kbit/s. A link's uplink below this backlogs.
REALTIME_PCM16_KBPS = (2048 + 8) * 8 / 64.0


@dataclass(frozen=True)
class NetworkProfile:
    """One kind of link, both directions. ``0`` rate: not limited; ``0`` stall_every_s: no stalls."""

    name: str
    uplink_kbps: float = 0.0
    downlink_kbps: float = 0.0
    one_way_delay_ms: float = 0.0
    jitter_ms: float = 0.0
    stall_every_s: float = 0.0
    stall_ms: float = 0.0
    burst_bytes: int = 4096
    source: str = ""

    def links(self, seed: str) -> tuple[Link, Link]:
        """(uplink, downlink) for one connection; ``seed`` makes its jitter and stall phase repeatable."""
        return (Link(self.uplink_kbps, self.burst_bytes, self.one_way_delay_ms, self.jitter_ms, self.stall_every_s,
                     self.stall_ms, seed=f"{seed}/up"),
                Link(self.downlink_kbps, self.burst_bytes, self.one_way_delay_ms, self.jitter_ms, self.stall_every_s,
                     self.stall_ms, seed=f"{seed}/down"))

    def describe(self) -> str:
        def rate(kbps: float) -> str:
            return "unlimited" if not kbps else f"{kbps:g} kbit/s"

        text = (f"{self.name}: up {rate(self.uplink_kbps)}, down {rate(self.downlink_kbps)}, "
                f"{self.one_way_delay_ms:g} ms one way + 0-{self.jitter_ms:g} ms jitter")
        if self.stall_every_s and self.stall_ms:
            text += f", a {self.stall_ms:g} ms stall every {self.stall_every_s:g} s"
        return text


# The named profiles. Where a figure is published, its source is named; where none is (jitter,
# stalls, a congested cell), the figure is ours and says so. docs/networks.md has the table.
PROFILES: Mapping[str, NetworkProfile] = MappingProxyType({p.name: p for p in (
    NetworkProfile("wifi", uplink_kbps=1000, downlink_kbps=5000, one_way_delay_ms=14, jitter_ms=2,
                   source="WebPageTest connectivity profile 'Cable' (5 Mbps down, 1 Mbps up, 28 ms RTT); "
                          "jitter ours"),
    NetworkProfile("4g", uplink_kbps=750, downlink_kbps=1600, one_way_delay_ms=75, jitter_ms=10,
                   source="Lighthouse's default mobile throttling, 'Slow 4G' (150 ms RTT, 1.6 Mbps down, 750 kbps "
                          "up: the bottom quarter of 4G connections), = WebPageTest '3GFast'; jitter ours"),
    NetworkProfile("3g", uplink_kbps=128, downlink_kbps=384, one_way_delay_ms=150, jitter_ms=20,
                   source="rates: a UMTS Release 99 packet bearer, UL 128 / DL 384 kbit/s (3GPP TS 34.108 "
                          "reference radio bearers); 300 ms RTT: WebPageTest '3G'; jitter ours"),
    NetworkProfile("congested-wifi", uplink_kbps=200, downlink_kbps=1000, one_way_delay_ms=30, jitter_ms=40,
                   stall_every_s=10, stall_ms=300,
                   source="ours: a contended shared cell whose uplink share (200 kbit/s, the figure the kernel "
                          "validation uses with tc tbf) is below real-time PCM16; stalls ours"),
    NetworkProfile("lossy", uplink_kbps=1000, downlink_kbps=5000, one_way_delay_ms=14, jitter_ms=5,
                   stall_every_s=4, stall_ms=200,
                   source="wifi's rates and delay; a lost segment on TCP costs a retransmission timeout, at least "
                          "200 ms on Linux (TCP_RTO_MIN): a 200 ms stall every 4 s (ours)"),
)})

_PROFILE_FIELDS: Mapping[str, type] = MappingProxyType({"uplink_kbps": float, "downlink_kbps": float, "one_way_delay_ms": float, "jitter_ms": float,
                   "stall_every_s": float, "stall_ms": float, "burst_bytes": int})


class Link:
    """One direction of an emulated link (see the module docstring): ``send(now, nbytes)`` → the
    time those bytes reach the far end; ``backlog_bytes(now)`` → bytes written that have not left."""

    __slots__ = ("_backlog", "_backlog_bytes", "_bytes_per_s", "_last_delivery", "_last_departure", "_rng",
                 "_tat", "backlog_max_bytes", "burst_bytes", "delay_s", "jitter_s", "stall_every_s", "stall_phase_s",
                 "stall_s")

    def __init__(self, rate_kbps: float = 0.0, burst_bytes: int = 4096, one_way_delay_ms: float = 0.0,
                 jitter_ms: float = 0.0, stall_every_s: float = 0.0, stall_ms: float = 0.0, *, seed: str = "") -> None:
        self._bytes_per_s = rate_kbps * 125.0  # 0: not limited
        self.burst_bytes = burst_bytes
        self.delay_s = one_way_delay_ms / 1000.0
        self.jitter_s = jitter_ms / 1000.0
        self.stall_every_s = stall_every_s if stall_ms > 0 else 0.0
        self.stall_s = stall_ms / 1000.0
        self._rng = random.Random(seed)  # str seeds are hashed with SHA-512: the same on every run
        self.stall_phase_s = self._rng.uniform(0.0, self.stall_every_s) if self.stall_every_s else 0.0
        self._tat = -math.inf  # the token bucket's theoretical arrival time: full when it is past
        self._last_departure = -math.inf
        self._last_delivery = -math.inf
        self._backlog: deque[tuple[float, int]] = deque()  # (departure, bytes) of chunks not yet left
        self._backlog_bytes = 0
        self.backlog_max_bytes = 0

    def _after_stall(self, at: float) -> float:
        """``at``, or the end of the stall it falls in."""
        every = self.stall_every_s
        if not every:
            return at
        start = self.stall_phase_s + math.floor((at - self.stall_phase_s) / every) * every
        return max(at, start + self.stall_s)

    def departure(self, now: float, nbytes: int) -> float:
        """When ``nbytes`` written at ``now`` leave (the rate and the stalls; nothing recorded)."""
        start = max(self._last_departure, now)
        rate = self._bytes_per_s
        if rate:
            excess = nbytes - self.burst_bytes
            if excess <= 0:  # leaves once the bucket has room for it
                earliest = self._tat + excess / rate
            else:  # more than the bucket: when it is full, plus the excess at the rate
                earliest = max(start, self._tat) + excess / rate
            start = max(start, earliest)
        return self._after_stall(start)

    def send(self, now: float, nbytes: int) -> float:
        """``nbytes`` written at ``now`` (monotonic s): when they reach the far end."""
        departure = self.departure(now, nbytes)
        rate = self._bytes_per_s
        if rate:  # the bucket's debt grows by the chunk (by at most the bucket: the excess was waited out)
            self._tat = max(self._tat, departure) + min(nbytes, self.burst_bytes) / rate
        self._last_departure = departure
        if departure > now and nbytes:
            backlog = self.backlog_bytes(now) + nbytes
            self._backlog.append((departure, nbytes))
            self._backlog_bytes = backlog
            self.backlog_max_bytes = max(self.backlog_max_bytes, backlog)
        delivery = departure + self.delay_s
        if self.jitter_s:
            delivery += self._rng.uniform(0.0, self.jitter_s)
        delivery = max(delivery, self._last_delivery)  # behind the chunk before it: a TCP stream keeps its order
        self._last_delivery = delivery
        return delivery

    def backlog_bytes(self, now: float) -> int:
        """Bytes written that have not left the link by ``now`` (excluding bytes on their way)."""
        backlog = self._backlog
        while backlog and backlog[0][0] <= now:
            self._backlog_bytes -= backlog.popleft()[1]
        return self._backlog_bytes

    def reset_backlog_max(self, now: float) -> None:
        """Start a new maximum (a turn's) from the backlog there is now."""
        self.backlog_max_bytes = self.backlog_bytes(now)


@dataclass(frozen=True)
class ProfileMix:
    """Profiles and their integer weights; user ``n`` gets :meth:`profile_for` ``(n)``.

    The assignment is deterministic, not drawn: a smooth weighted round robin over one period of
    ``sum(weights)`` users, so that over the first N users each profile's count is within one
    of ``N * weight / sum(weights)`` — a 70/25/5 mix of 100 users is exactly 70, 25 and 5.
    """

    profiles: tuple[NetworkProfile, ...]
    weights: tuple[int, ...]
    order: tuple[int, ...]  # one period: the index in ``profiles`` of user n % period

    @classmethod
    def of(cls, entries: list[tuple[NetworkProfile, int]]) -> ProfileMix:
        profiles = tuple(profile for profile, _ in entries)
        weights = tuple(weight for _, weight in entries)
        total = sum(weights)
        current = [0] * len(weights)
        order = []
        for _ in range(total):
            for i, weight in enumerate(weights):
                current[i] += weight
            chosen = max(range(len(weights)), key=lambda i: (current[i], -i))
            current[chosen] -= total
            order.append(chosen)
        return cls(profiles, weights, tuple(order))

    def profile_for(self, user_number: int) -> NetworkProfile:
        return self.profiles[self.order[user_number % len(self.order)]]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.profiles)

    def describe(self) -> str:
        if len(self.profiles) == 1:
            return self.profiles[0].describe()
        return ", ".join(f"{p.name} {w}/{sum(self.weights)}" for p, w in zip(self.profiles, self.weights))


MAX_MIX_PERIOD = 10_000


def parse_network(text: str, option: str = "--network") -> ProfileMix | None:
    """``--network``'s value → a mix, or None for none (``""`` or ``none``).

    ``3g`` (one named profile); ``wifi:70,4g:25,3g:5`` (a mix, integer weights); or one profile
    of one's own, ``uplink_kbps=200,one_way_delay_ms=50`` (the fields of :class:`NetworkProfile`;
    it is named ``custom``). Raises UsageError naming the option, the bad part and what is valid.
    """
    text = (text or "").strip()
    if not text or text.lower() == "none":
        return None
    valid = ", ".join(PROFILES)
    if "=" in text:
        fields: dict[str, float | int] = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in _PROFILE_FIELDS:
                raise UsageError(f"{option} {text!r}: {key!r} is not a link figure; give "
                                 f"{', '.join(_PROFILE_FIELDS)} as name=value, or a profile name ({valid})")
            try:
                number = _PROFILE_FIELDS[key](value.strip())
            except ValueError:
                raise UsageError(f"{option} {text!r}: {key}={value.strip()!r} is not a number") from None
            if number < 0 or not math.isfinite(number):
                raise UsageError(f"{option} {text!r}: {key} must be 0 or more, got {value.strip()}")
            fields[key] = number
        return ProfileMix.of([(NetworkProfile("custom", source="--network, given figures", **fields), 1)])
    entries: list[tuple[NetworkProfile, int]] = []
    for part in text.split(","):
        name, colon, weight_text = part.strip().partition(":")
        name = name.strip().lower()
        if name not in PROFILES:
            raise UsageError(f"{option} {text!r}: unknown network profile {name!r}; the profiles are {valid} "
                             "(a mix: wifi:70,4g:25,3g:5)")
        if any(profile.name == name for profile, _ in entries):
            raise UsageError(f"{option} {text!r}: {name} is given twice")
        weight = 1
        if colon:
            try:
                weight = int(weight_text.strip())
            except ValueError:
                raise UsageError(f"{option} {text!r}: the weight of {name}, {weight_text.strip()!r}, is not a whole "
                                 "number (a mix: wifi:70,4g:25,3g:5)") from None
            if weight < 1:
                raise UsageError(f"{option} {text!r}: the weight of {name} must be 1 or more, got {weight}")
        entries.append((PROFILES[name], weight))
    if sum(weight for _, weight in entries) > MAX_MIX_PERIOD:
        raise UsageError(f"{option} {text!r}: the weights add up to more than {MAX_MIX_PERIOD}; use percentages")
    return ProfileMix.of(entries)
