"""Benchmarks: capacity of one worker, truth of the measurement, analysis speed (``python -m bench``)."""
