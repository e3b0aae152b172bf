"""The audio checks behind ``mic_probe.py``: is a microphone, speaker or loopback working? With numbers.

One layer a module, each depending only on those above it:

* :mod:`audio_probe.signals` — pure numpy maths: levels, tones, chirps, delay, frequency, SNR,
  THD, and the verdicts
* :mod:`audio_probe.devices` — the PortAudio devices (sounddevice, imported inside functions)
* :mod:`audio_probe.result` — :class:`~audio_probe.result.Result`, exit statuses, retries
* :mod:`audio_probe.commands` — the ``devices``, ``mic``, ``speaker`` and ``loopback`` checks
* :mod:`audio_probe.acoustic` — the ``acoustic`` check: speaker to microphone to a gateway
* :mod:`audio_probe.cli` — the command line (``python mic_probe.py``, ``voice-mic-probe``)

Importing any of them works on a machine without PortAudio; a check that needs a device then
raises :class:`voiceharness.errors.DeviceError` with the ``portaudio_missing`` diagnosis.
"""
