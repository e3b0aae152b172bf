# One image for every service of docker-compose.yml: the reference gateway, the Locust
# master and its workers. The audio corpus is committed, so nothing is synthesised at build.
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng libsndfile1 libportaudio2 curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY voiceharness ./voiceharness
COPY gateway ./gateway
COPY audio_corpus ./audio_corpus
COPY analysis ./analysis
COPY locustfiles ./locustfiles
COPY audio_probe ./audio_probe
COPY mic_probe.py ./
RUN pip install --no-cache-dir .
EXPOSE 7090 8089 5557 9646
CMD ["python", "-m", "gateway", "--host", "0.0.0.0", "--port", "7090"]
