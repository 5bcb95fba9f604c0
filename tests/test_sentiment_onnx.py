"""qc_pipeline.sentiment_onnx: the OPTIONAL fine-tuned m3e-small ONNX sentiment backend.

The artifact (``models/sentiment-onnx/`` or ``$QC_PIPELINE_MODELS_DIR/sentiment-onnx``) is never
committed (non-commercial weights) and CI does not build it, so the model tests skip without it.
Build it with ``python scripts/finetune_sentiment_onnx.py --out models/sentiment-onnx``.
Held-out checks read the shared DEV data and skip without it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pytest

from qc_pipeline import sentiment as S
from qc_pipeline import sentiment_onnx as SO
from qc_pipeline.errors import SetupError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QC_SHARED_DATA", REPO.parent / "shared" / "data"))

ANGRY = "你们这什么破服务，我要投诉到12315！"
POSITIVE = "好的，谢谢你，解决得很快"
NEUTRAL = "我想查一下物流"
# Slice sizes and allowed gap between the slice's accuracy and the card's full held-out accuracy
# (binomial sd at n=150, p≈0.88 is 0.027; at n=240, p≈0.7 it is 0.03 → ~3 sd).
POLARITY_SLICE, POLARITY_MARGIN = 150, 0.08
EMOTION_SLICE, EMOTION_MARGIN = 240, 0.09


def _artifact_dir() -> Path:
    env = os.environ.get("QC_PIPELINE_MODELS_DIR")
    return (Path(env) if env else REPO / "models") / SO.ARTIFACT_SUBDIR


@pytest.fixture(scope="module")
def model() -> SO.OnnxSentimentModel:
    d = _artifact_dir()
    if not (d / SO.MODEL_NAME).is_file():
        pytest.skip(f"optional ONNX sentiment artifact {d} not built (non-commercial weights, never committed): "
                    f"run `{SO.BUILD_HINT}` to test it")
    pytest.importorskip("onnxruntime", reason="the ONNX sentiment backend needs onnxruntime")
    pytest.importorskip("tokenizers", reason="the ONNX sentiment backend needs tokenizers")
    return SO.OnnxSentimentModel.load(d)


# ---- always run (no artifact needed) -------------------------------------------------------------

def test_missing_artifact_names_the_build_script(tmp_path, monkeypatch):
    with pytest.raises(SetupError, match="scripts/finetune_sentiment_onnx.py") as e:
        SO.OnnxSentimentModel.load(tmp_path / "nope")
    assert "NON-COMMERCIAL" in str(e.value)
    monkeypatch.setenv("QC_PIPELINE_MODELS_DIR", str(tmp_path))
    assert SO.default_artifact_dir() == tmp_path.resolve() / "sentiment-onnx"
    with pytest.raises(SetupError, match="scripts/finetune_sentiment_onnx.py"):
        SO.OnnxSentimentModel.load()


def test_not_the_default_backend():
    # the default path must not touch the non-commercial model
    assert S.default_artifact_path().parent.name == S.ARTIFACT_SUBDIR != SO.ARTIFACT_SUBDIR


def test_pad_and_tokenizer_preprocessing(tmp_path):
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "ab": 2, "c": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    t = SO.load_tokenizer(tmp_path / "tokenizer.json", max_length=2)
    ids, mask = SO.encode(t, ["ＡＢ", "AB   c x"])        # NFKC + lower-case before tokenizing
    assert ids.tolist() == [[2, 0], [2, 3]] and mask.tolist() == [[1, 0], [1, 1]]
    ids, mask = SO.pad([])
    assert ids.shape == (0, 0)


# ---- the built artifact -----------------------------------------------------------------------------

def test_load_logs_licence_warning(model, caplog):
    with caplog.at_level(logging.WARNING, logger="qc_pipeline.sentiment_onnx"):
        SO.OnnxSentimentModel.load(model.path)
    assert any("NON-COMMERCIAL" in r.getMessage() for r in caplog.records)
    assert model.card["licence"]["default_backend"] is False


def test_contract_angry_neutral_positive(model):
    angry, neutral, positive = model.score([ANGRY, NEUTRAL, POSITIVE])
    assert angry.emotion == "angry" and angry.anger_prob > 0.4 and angry.negative_prob > 0.7
    assert {"12315", "投诉"} <= set(angry.escalation) and angry.emotion_index <= S.ESCALATION_CAP
    raw, = model.score([ANGRY], escalation_cap=None)
    assert raw.emotion_index < 50                       # low even without the escalation cap
    assert positive.emotion_index > 60 and positive.negative_prob < 0.3 and positive.escalation == ()
    assert angry.emotion_index < neutral.emotion_index < positive.emotion_index
    assert raw.emotion_index < neutral.emotion_index


def test_score_shapes_and_types(model):
    out = model.score(["", "   ", ANGRY, POSITIVE])
    assert len(out) == 4
    assert out[0] == out[1] and out[0].emotion_index == 50.0 and out[0].negative_prob == 0.5
    for s in out:
        assert isinstance(s, S.UtteranceSentiment)
        assert 0.0 <= s.negative_prob <= 1.0 and 0.0 <= s.anger_prob <= 1.0
        assert 0.0 <= s.emotion_index <= 100.0
        assert s.emotion in S.EMOTIONS
        assert tuple(c for c, _ in s.emotion_probs) == S.EMOTIONS
        assert math.isclose(sum(p for _, p in s.emotion_probs), 1.0, abs_tol=1e-4)
    assert model.score([]) == []
    # batching by length must not change a text's score
    long = "这家酒店的服务非常差，" * 30
    together = model.score([ANGRY, long, POSITIVE])
    alone = [model.score([t])[0] for t in (ANGRY, long, POSITIVE)]
    for a, b in zip(together, alone):
        assert a.emotion == b.emotion and abs(a.emotion_index - b.emotion_index) < 0.05
    # session aggregation works on its output unchanged
    calm = model.score(["你好", POSITIVE])
    upset = model.score(["你好", "你们这什么破服务", "我要投诉到12315！"])
    assert S.session_emotion(upset) < S.session_emotion(calm)
    assert S.is_flagged(S.session_emotion(upset))


def test_card_matches_artifact(model):
    card = json.loads((model.path / SO.CARD_NAME).read_text("utf-8"))
    assert card["format"] == SO.ARTIFACT_FORMAT
    assert card["artifact"]["bytes"] == (model.path / SO.MODEL_NAME).stat().st_size
    anchors = card["calibration"]["anchors_train_mean_raw_index"]
    assert anchors["neutral"] > anchors["angry"]
    assert "finetune_sentiment_onnx.py" in card["command"]


def test_sha_mismatch_is_refused(model, tmp_path):
    d = tmp_path / "sentiment-onnx"
    d.mkdir()
    for f in (SO.MODEL_NAME, SO.TOKENIZER_NAME):
        (d / f).symlink_to(model.path / f)
    card = dict(model.card, artifact=dict(model.card["artifact"], sha256="0" * 64))
    (d / SO.CARD_NAME).write_text(json.dumps(card), "utf-8")
    with pytest.raises(SetupError, match="sha256"):
        SO.OnnxSentimentModel.load(d)
    assert SO.OnnxSentimentModel.load(d, verify=False).score([ANGRY])[0].emotion == "angry"


# ---- held-out slice agrees with the card --------------------------------------------------------

def _read(name: str) -> list[dict]:
    path = SHARED / name / "dev.jsonl"
    if not path.is_file():
        pytest.skip(f"shared DEV data not present ({path})")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(ln) for ln in fh if ln.strip()]


def _polarity_slice() -> list[tuple[str, int]]:
    out = []
    for name in ("sentiment_chnsenticorp_htl", "sentiment_waimai_10k", "sentiment_online_shopping_10_cats"):
        rows = [r for r in _read(name) if (r.get("text") or "").strip() and S.split_of(r["text"].strip()) == "test"]
        out += [(r["text"].strip(), int(r["label"])) for r in rows[:POLARITY_SLICE // 3]]
    return out


def test_heldout_slice_agrees_with_card(model):
    metrics = model.card["metrics_test_split"]
    pol = _polarity_slice()
    pred = [int(p < 0.5) for p in model.negative_probs([t for t, _ in pol])]
    acc = sum(p == y for p, (_, y) in zip(pred, pol)) / len(pol)
    want = metrics["polarity_pooled"]["accuracy"]
    assert abs(acc - want) <= POLARITY_MARGIN, f"polarity slice acc {acc:.3f} vs card {want:.3f} (n={len(pol)})"

    emo = [(r["text"].strip(), r["label"]) for r in _read("sentiment_smp2020_ewect")
           if r["text"].strip() and S.split_of(r["text"].strip()) == "test"][:EMOTION_SLICE]
    pred = [s.emotion for s in model.score([t for t, _ in emo])]
    acc = sum(p == y for p, (_, y) in zip(pred, emo)) / len(emo)
    want = metrics["sentiment_smp2020_ewect"]["accuracy"]
    assert abs(acc - want) <= EMOTION_MARGIN, f"emotion slice acc {acc:.3f} vs card {want:.3f} (n={len(emo)})"
