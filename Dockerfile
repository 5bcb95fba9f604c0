# CPU image: qc-pipeline with the embedded whisper-base baked in; no network needed at run time.
#   docker build -t qc-pipeline .
#   docker run --rm -v "$PWD/calls:/data/in:ro" -v "$PWD/results:/data/out" qc-pipeline run /data/in --out /data/out
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PYANNOTE_METRICS_ENABLED=0 \
    QC_PIPELINE_MODELS_DIR=/opt/qc/models

WORKDIR /opt/qc
COPY pyproject.toml README.md ./
COPY qc_pipeline ./qc_pipeline
COPY configs ./configs
COPY samples ./samples
COPY models/sentiment ./models/sentiment
RUN pip install --no-cache-dir '.[asr,diar,semantic]' \
    && qc-pipeline models install --dir /opt/qc/models \
    && qc-pipeline models check --dir /opt/qc/models

ENTRYPOINT ["qc-pipeline"]
CMD ["run", "samples/calls/manifest.csv", "samples/chats", "--out", "/data/out"]
