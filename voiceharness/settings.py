"""Connection settings: the guide's presets, its JSON config shape, and explicit overrides.

Precedence, lowest first: the preset (``local`` unless told otherwise), a config file in the
guide's shape, then explicit options. The guide's settings page holds host, port,
protocol, autoReconnect and maxRetries; a config file may add the harness's own keys::

    {"host": "localhost", "port": 7090, "protocol": "ws", "path": "/ws/audio",
     "autoReconnect": true, "maxRetries": 5, "chunkSize": 1024, "authToken": "..."}

The production and corporate presets are configuration for real users, never targets of
this project's tests.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from voiceharness import guide
from voiceharness.errors import UsageError


@dataclass(frozen=True)
class Settings:
    host: str = "localhost"
    port: int = 7090
    protocol: str = "ws"  # ws or wss
    path: str = guide.WS_PATH_GATEWAY
    auto_reconnect: bool = True
    max_retries: int = 5
    chunk_samples: int = guide.CHUNK_SAMPLES
    auth_token: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{self.protocol}://{host}:{self.port}{self.path}"

    def describe(self) -> str:
        """The settings for a log line, with the token never shown."""
        # Not "token=...": the log's token redaction would print "token=[redacted]" for no token at all.
        auth = "bearer token" if self.auth_token else "none"
        return (
            f"{self.url} autoReconnect={self.auto_reconnect} maxRetries={self.max_retries} "
            f"chunk={self.chunk_samples} samples, auth: {auth}"
        )


PRESETS: dict[str, Settings] = {
    "local": Settings("localhost", 7090, "ws", max_retries=5),
    "docker": Settings("localhost", 7090, "ws", max_retries=10),
    "production": Settings("voice.smartjarvis.com", 443, "wss", max_retries=20),
    "corporate": Settings("192.168.1.100", 7090, "ws", max_retries=15),
}

_CONFIG_KEYS = {
    "host": ("host", str),
    "port": ("port", int),
    "protocol": ("protocol", str),
    "path": ("path", str),
    "autoReconnect": ("auto_reconnect", bool),
    "maxRetries": ("max_retries", int),
    "chunkSize": ("chunk_samples", int),
    "authToken": ("auth_token", str),
}


def preset(name: str) -> Settings:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def load_config(path: str, base: Settings) -> Settings:
    """Apply a JSON config file in the guide's shape on top of ``base``."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise UsageError(f"config file {path} not found; pass an existing JSON file to --voice-config") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"config file {path} is not valid JSON ({error}); fix it or drop --voice-config") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a JSON object like {{\"host\": ..., \"port\": ...}}")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _CONFIG_KEYS:
            raise UsageError(f"config file {path}: unknown key {key!r}; known keys: {', '.join(_CONFIG_KEYS)}")
        field_name, kind = _CONFIG_KEYS[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"config file {path}: {key} must be an integer, got {value!r}")
        if kind is not int and not isinstance(value, kind):
            raise UsageError(f"config file {path}: {key} must be a {kind.__name__}, got {value!r}")
        changes[field_name] = value
    return validate(replace(base, **changes), source=f"config file {path}")


def apply_url(base: Settings, url: str) -> Settings:
    """Apply an explicit ``ws://host:port/path`` (Locust's --host) on top of ``base``."""
    parts = urlsplit(url if "://" in url else f"{base.protocol}://{url}")
    if parts.scheme not in ("ws", "wss"):
        raise UsageError(f"--host {url!r}: use a ws:// or wss:// URL, e.g. ws://127.0.0.1:7090")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--host {url!r}: the port is not a number") from None
    changes: dict[str, Any] = {"protocol": parts.scheme, "host": parts.hostname or base.host}
    changes["port"] = port or (443 if parts.scheme == "wss" else base.port if parts.scheme == base.protocol else 80)
    if parts.path and parts.path != "/":
        changes["path"] = parts.path
    return validate(replace(base, **changes), source=f"--host {url}")


def validate(settings: Settings, source: str = "settings") -> Settings:
    if settings.protocol not in ("ws", "wss"):
        raise UsageError(f"{source}: protocol must be ws or wss, got {settings.protocol!r}")
    if not 0 < settings.port < 65536:
        raise UsageError(f"{source}: port must be 1-65535, got {settings.port}")
    if not settings.path.startswith("/"):
        raise UsageError(f"{source}: the WebSocket path must start with '/', got {settings.path!r}")
    if settings.max_retries < 0:
        raise UsageError(f"{source}: maxRetries must be 0 or more, got {settings.max_retries}")
    if not 0 < settings.chunk_samples <= 16 * guide.CHUNK_SAMPLES:
        raise UsageError(f"{source}: chunk size must be 1-{16 * guide.CHUNK_SAMPLES} samples, got {settings.chunk_samples}")
    return settings


def resolve(
    *,
    preset_name: str | None = None,
    config_path: str | None = None,
    url: str | None = None,
    overrides: dict[str, Any] | None = None,
    default_path: str | None = None,
) -> Settings:
    """Preset (with the dialect's ``default_path``), then config file, then ``url``, then explicit
    overrides (None values ignored)."""
    settings = preset(preset_name or "local")
    if default_path:
        settings = replace(settings, path=default_path)
    if config_path:
        settings = load_config(os.path.expanduser(config_path), settings)
    if url:
        settings = apply_url(settings, url)
    if overrides:
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    return validate(settings)


def backoff_ms(attempt: int, rng: random.Random | None = None) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based), in ms.

    The browser tester waits min(1000 * 2**n, 30000) ms. A thousand simulated users doing
    that in lock-step would hit a recovering gateway all at once, so the delay is spread
    over [50 %, 100 %] of that value ("equal jitter").
    """
    ceiling = min(guide.BACKOFF_BASE_MS * 2 ** max(0, attempt), guide.BACKOFF_CAP_MS)
    rng = rng or random
    return ceiling * (0.5 + 0.5 * rng.random())


def parse_min_max(text: object, number: type, *, option: str, what: str, minimum: float,
                  example: str = "") -> tuple[Any, Any]:
    """An option's ``N`` or ``MIN-MAX`` (``--call-turns 2-5``, ``--think-time-ms 1000-3000``) as
    ``(low, high)`` of ``number``; ``N`` is ``(N, N)``. Raises UsageError naming ``option``: ``what``
    when it is not numbers, and the bounds when not ``minimum <= MIN <= MAX``."""
    low, _, high = str(text).strip().partition("-")
    try:
        low_value = number(low)
        high_value = number(high) if high else low_value
    except ValueError:
        raise UsageError(f"{option} {text!r}: {what}") from None
    if not minimum <= low_value <= high_value:
        raise UsageError(f"{option} {text!r}: need {minimum} <= MIN <= MAX{example}")
    return low_value, high_value

