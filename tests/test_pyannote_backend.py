"""pyannote backend: load a local pipeline folder offline and run it on real audio.

pyannote checkpoints are not on PyPI, so the folder is built here by
scripts/build_pyannote_test_pipeline.py: the real pyannote 4.x SpeakerDiarization structure
(PyanNet segmentation, WeSpeakerResNet34 embedding, VBx PLDA) with seeded RANDOM weights.  These
tests therefore check the loading and run path (no network, telemetry off, clustering reached,
well-formed segments), never diarization accuracy: with random weights the "speakers" are noise.

pyannote.audio needs torch 2.9.1, which the main environment (torch 2.13.0) does not have, so the
module is skipped there.  To run it, in a separate environment:

    python -m venv /tmp/pyannote-venv
    /tmp/pyannote-venv/bin/pip install torch==2.9.1 torchaudio==2.9.1 pyannote.audio pytest
    /tmp/pyannote-venv/bin/pip install -e . numpy pyyaml pyarrow tqdm av opencc jieba pypinyin \\
        scikit-learn==1.9.1 joblib faster-whisper
    PYANNOTE_METRICS_ENABLED=0 /tmp/pyannote-venv/bin/python -m pytest tests/test_pyannote_backend.py
"""

import importlib.util
import os
import re
import socket
from pathlib import Path

import pytest

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")   # before pyannote is imported below
pytest.importorskip("pyannote.audio", reason="pyannote.audio (torch 2.9.1) is not installed in this environment; "
                                             "see this module's docstring to run it in its own venv")

from qc_pipeline.audio import load_audio  # noqa: E402
from qc_pipeline.diarize.pyannote_backend import PyannoteDiarizer  # noqa: E402
from qc_pipeline.errors import SetupError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_SPEAKERS = 2


def _builder():
    spec = importlib.util.spec_from_file_location("build_pyannote_test_pipeline",
                                                  REPO / "scripts" / "build_pyannote_test_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def _network_attempts():
    """Every outgoing connection or DNS lookup in this module is recorded and refused."""
    attempts: list = []

    def refuse(what):
        def blocked(*args, **kwargs):
            attempts.append((what, args[1:] if what == "connect" else args[:2]))
            raise OSError(f"network access attempted in an offline test: {what} {args[1:3]}")
        return blocked

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse("connect"))
        mp.setattr(socket.socket, "connect_ex", refuse("connect"))
        mp.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        yield attempts


@pytest.fixture
def no_network(_network_attempts):
    """The network attempts made during one test (module fixtures check their own); tests assert it stays []."""
    _network_attempts.clear()
    return _network_attempts


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    # segmentation_step 0.5 (pyannote's default is 0.1): 5x fewer windows, so a CPU run takes seconds
    return _builder().build_pipeline(tmp_path_factory.mktemp("pyannote") / "pipeline", seed=0,
                                     segmentation_step=0.5)


@pytest.fixture(scope="module")
def sample_wav(shared) -> Path:
    # shared = <repo>/../shared/data (or $QC_SHARED_DATA), see conftest.py
    wav = shared / "diarization_en_pyannote" / "sample.wav"
    if not wav.is_file():
        pytest.skip(f"{wav} not present")
    return wav


@pytest.fixture(scope="module")
def diarizer(pipeline_dir, _network_attempts) -> PyannoteDiarizer:
    _network_attempts.clear()
    d = PyannoteDiarizer(str(pipeline_dir), max_speakers=MAX_SPEAKERS)
    d.setup()
    assert _network_attempts == []
    return d


def test_builder_writes_the_documented_layout_deterministically(pipeline_dir, tmp_path):
    files = sorted(str(p.relative_to(pipeline_dir)) for p in pipeline_dir.rglob("*") if p.is_file())
    assert files == ["config.yaml", "embedding/pytorch_model.bin", "plda/plda.npz",
                     "plda/xvec_transform.npz", "segmentation/pytorch_model.bin"]
    again = _builder().build_pipeline(tmp_path / "again", seed=0, segmentation_step=0.5)
    for name in files:
        assert (again / name).read_bytes() == (pipeline_dir / name).read_bytes(), name


def test_missing_config_yaml_is_a_setup_error_naming_the_folder(tmp_path):
    folder = tmp_path / "no-pipeline-here"
    folder.mkdir()
    with pytest.raises(SetupError, match=re.escape(str(folder))):
        PyannoteDiarizer(str(folder)).setup()


def test_hub_ids_in_config_are_a_setup_error_not_a_download(pipeline_dir, tmp_path, no_network):
    # the shape of pyannote/speaker-diarization-3.1's config.yaml: models named by hub id
    folder = tmp_path / "hub-config"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        "pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n  params:\n"
        "    segmentation: pyannote/segmentation-3.0\n    embedding: pyannote/wespeaker-voxceleb-resnet34-LM\n",
        encoding="utf-8")
    with pytest.raises(SetupError, match=r"pipeline\.params\.segmentation = 'pyannote/segmentation-3\.0'"):
        PyannoteDiarizer(str(folder)).setup()
    # local models, but the PLDA left to the pipeline's (hub) default
    text = (pipeline_dir / "config.yaml").read_text(encoding="utf-8")
    (folder / "config.yaml").write_text(text.replace("    plda: $model/plda\n", ""), encoding="utf-8")
    for sub in ("segmentation", "embedding"):
        (folder / sub).symlink_to(pipeline_dir / sub)
    with pytest.raises(SetupError, match="no plda entry"):
        PyannoteDiarizer(str(folder)).setup()
    assert no_network == []


def test_setup_loads_offline_with_telemetry_off(pipeline_dir, monkeypatch, no_network):
    from pyannote.audio import Pipeline
    from pyannote.audio.telemetry.metrics import is_metrics_enabled

    monkeypatch.setenv("PYANNOTE_METRICS_ENABLED", "true")   # the setting pyannote ships with
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    d = PyannoteDiarizer(str(pipeline_dir), max_speakers=MAX_SPEAKERS)
    d.setup()
    assert isinstance(d.pipeline, Pipeline)
    assert type(d.pipeline).__name__ == "SpeakerDiarization"
    assert type(d.pipeline._segmentation.model).__name__ == "PyanNet"
    assert type(d.pipeline._embedding.model_).__name__ == "WeSpeakerResNet34"
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "0"
    assert not is_metrics_enabled()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    pipeline = d.pipeline
    d.setup()   # idempotent
    assert d.pipeline is pipeline
    assert no_network == []


def test_readme_relative_paths_load_from_any_working_directory(pipeline_dir, tmp_path, monkeypatch, no_network):
    """models/README.md's layout: ``segmentation: ./segmentation/pytorch_model.bin``, not ``$model/...``."""
    folder = tmp_path / "readme-layout"
    folder.mkdir()
    text = (pipeline_dir / "config.yaml").read_text(encoding="utf-8")
    text = (text.replace("$model/segmentation", "./segmentation/pytorch_model.bin")
                .replace("$model/embedding", "./embedding/pytorch_model.bin")
                .replace("$model/plda", "./plda"))
    (folder / "config.yaml").write_text(text, encoding="utf-8")
    for sub in ("segmentation", "embedding", "plda"):
        (folder / sub).symlink_to(pipeline_dir / sub)
    monkeypatch.chdir(tmp_path)   # not the pipeline folder
    d = PyannoteDiarizer(str(folder))
    d.setup()
    assert type(d.pipeline._segmentation.model).__name__ == "PyanNet"
    assert no_network == []


def _check_segments(segments, duration):
    assert segments, "no segments"
    for seg in segments:
        assert 0.0 <= seg.start < seg.end <= duration + 1e-6, seg
        assert re.fullmatch(r"spk\d+", seg.speaker), seg
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert len({s.speaker for s in segments}) <= MAX_SPEAKERS


def test_diarize_real_audio_returns_well_formed_segments(diarizer, sample_wav, monkeypatch, no_network):
    import pyannote.audio.pipelines.clustering as clustering

    vbx_inputs = []
    if hasattr(clustering, "cluster_vbx"):   # spy: the PLDA + VBx clustering stage really runs
        real = clustering.cluster_vbx
        monkeypatch.setattr(clustering, "cluster_vbx", lambda *a, **k: vbx_inputs.append(a[1].shape) or real(*a, **k))
    audio, info = load_audio(sample_wav)
    assert audio.shape[0] == 1   # mono: the case the diarizer is for
    segments = diarizer.diarize(audio[0], [(0.0, info.duration_s)])
    _check_segments(segments, info.duration_s)
    if hasattr(clustering, "cluster_vbx"):
        assert vbx_inputs and vbx_inputs[0][0] >= 2, vbx_inputs   # >= 2 embeddings went through PLDA + VBx
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "0"
    assert no_network == []


def test_segment_stage_with_pyannote_backend_produces_spans(pipeline_dir, sample_wav, no_network):
    from qc_pipeline.config import load_config
    from qc_pipeline.pipeline import Pipeline
    from qc_pipeline.records import CallSource
    from qc_pipeline.stages.decode import DecodeStage
    from qc_pipeline.stages.segment import SegmentStage

    cfg = load_config(overrides=("diarization.backend=pyannote", f"diarization.pyannote_pipeline={pipeline_dir}",
                                 f"diarization.max_speakers={MAX_SPEAKERS}"))
    pipe = Pipeline([DecodeStage(cfg.audio), SegmentStage(cfg.vad, cfg.diarization)])
    record = pipe.run_one(CallSource(call_id="sample", path=str(sample_wav)))
    assert record.ok, (record.error_reason, record.error_detail)
    assert isinstance(pipe.stages[1].diarizer, PyannoteDiarizer)
    assert record.agent_channel is None and "mono_no_diarizer" not in record.flags
    assert record.spans
    _check_segments(record.spans, record.audio_info.duration_s)
    assert all(s.channel == 0 and s.end - s.start >= cfg.vad.min_span_s for s in record.spans)
    assert no_network == []
