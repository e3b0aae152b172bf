"""mic_probe — is my microphone, speaker or loopback working? With numbers.

The audio checks a person does before a voice test (a microphone whose level bars react to
sound, a speaker that plays a 440 Hz tone) and the "Failed to access microphone" diagnosis, as
a command-line tool. Capture is the gateway protocol's format: 16 kHz, mono, PCM16,
1024-sample chunks (64 ms)::

    python mic_probe.py devices                 input and output devices, defaults marked *
    python mic_probe.py mic [--duration 5]      live level bars, then RMS/peak dBFS, clipping, verdict
    python mic_probe.py speaker [--level -12]   a 440 Hz tone; confirmed when the input hears it back
    python mic_probe.py loopback                chirp + tone out and back: latency, frequency error,
                                                SNR, THD, level
    python mic_probe.py acoustic                "hello jarvis" out of the speaker, into the microphone,
                                                to the gateway: the intent and the roundtrip

Every command takes ``--json`` (one JSON object on stdout, for scripts); those that use a
device take ``--device`` (an index or part of a name; ``IN,OUT`` for the commands that play and
capture) and ``--rate``; ``speaker``, ``loopback`` and ``acoustic`` take ``--attempts N`` (run a
failed check again when the failure may be a dropout of a busy machine). Exit status:
0 the check passed, 1 it failed, 2 it could not run (no device, device busy or denied,
PortAudio missing, gateway unreachable...). Device failures are reported with the
"Failed to access microphone" diagnosis — finding, likely causes, fixes — never a traceback.
When the device refuses 16 kHz, the probe captures at the device's own rate and resamples
to 16 kHz, and says so.

This file is the entry point (also installed as ``voice-mic-probe``); the probe itself is the
package :mod:`audio_probe`, one layer a module:

* :mod:`audio_probe.signals` — the signal maths: levels, tones, chirps, delay, frequency, SNR,
  THD and the verdicts, as pure numpy functions
* :mod:`audio_probe.devices` — PortAudio through sounddevice, imported inside the functions that
  need it, so the probe imports (and says what is missing) on a machine without PortAudio
* :mod:`audio_probe.result` — what a check found, exit statuses, retries
* :mod:`audio_probe.commands` — the ``devices``, ``mic``, ``speaker`` and ``loopback`` checks
* :mod:`audio_probe.acoustic` — the ``acoustic`` check, the one that talks to a gateway
* :mod:`audio_probe.cli` — options, output and exit status

Output on this machine, on the virtual loopback of ``scripts/virtual-audio.sh``::

    $ python mic_probe.py devices
    Input devices (* = default):
         0  pulse    32 ch   44100 Hz  ALSA
      *  1  default  32 ch   44100 Hz  ALSA
    Output devices (* = default):
         0  pulse    32 ch   44100 Hz  ALSA
      *  1  default  32 ch   44100 Hz  ALSA
    Verdict: OK — 2 devices

    $ python mic_probe.py loopback
    Output: 1 default, 16000 Hz mono
    Input: 1 default, 16000 Hz mono
    Played a 100-7000 Hz chirp (0.5 s) and a 440 Hz tone (1 s) at -6.0 dBFS peak
    Round-trip latency 144.0 ms (2304 samples), chirp correlation 1.000
    Tone 440.00 Hz (error +0.00 Hz) · level -9.0 dBFS · SNR 93.1 dB · THD 0.00042 % (-107.5 dB)
    Verdict: OK — the signal went out and came back intact

See docs/mic_probe.md for every command's output.
"""

from __future__ import annotations

import sys

from audio_probe.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
