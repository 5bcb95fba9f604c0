"""ASR backends (``base.AsrBackend``), their registry, and model installation (``install``)."""
