"""qc_pipeline.sentiment: the real trained artifact, the escalation lexicon, session aggregation.

Model tests load ``models/sentiment/sentiment-v1.joblib`` (or ``$QC_PIPELINE_MODELS_DIR/sentiment``)
and fail if it is missing: build it with ``python scripts/train_sentiment.py``.  Held-out accuracy
tests read the shared DEV data (``$QC_SHARED_DATA`` or ``../shared/data``) and skip without it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from qc_pipeline import sentiment as S
from qc_pipeline.errors import SetupError
from qc_pipeline.models import sha256_file

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QC_SHARED_DATA", REPO.parent / "shared" / "data"))
POLARITY_CORPORA = ("sentiment_chnsenticorp_htl", "sentiment_waimai_10k",
                    "sentiment_online_shopping_10_cats", "sentiment_bdci_car_2018")

# Measured on the held-out split with the v1 artifact (scripts/eval_sentiment.py):
#   pooled polarity accuracy 0.880 (n=409; snownlp 0.778), SMP2020 6-class accuracy 0.692 (n=782),
#   anger recall 0.761 (0.689 / 0.761 without the weak-labelled in-domain neutral turns).
#   Held-out weak-labelled neutral customer turns: md5 test split n=15, mean index 65.1, 33.3 % under 60;
#   rule-admitted turns of the 204 labelled evaluation dialogues (never trained on) n=276, 64.1, 37.0 %
#   (62.1, 46.7 % with the weak rows at weight 1 instead of 3).
#   Thresholds = measured minus a margin.
MIN_POLARITY_ACC = 0.85
MIN_EMOTION_ACC = 0.65
MIN_ANGER_RECALL = 0.70


def _artifact() -> Path:
    env = os.environ.get("QC_PIPELINE_MODELS_DIR")
    root = Path(env) if env else REPO / "models"
    return root / S.ARTIFACT_SUBDIR / S.ARTIFACT_NAME


@pytest.fixture(scope="module")
def model() -> S.SentimentModel:
    path = _artifact()
    if not path.is_file():
        pytest.fail(f"sentiment artifact {path} missing: run `python scripts/train_sentiment.py` "
                    "(models/*/ is git-ignored, so a clean clone does not have it)")
    return S.SentimentModel.load(path)


def _read(name: str) -> list[dict]:
    path = SHARED / name / "dev.jsonl"
    if not path.is_file():
        pytest.skip(f"shared DEV data not present ({path}); set QC_SHARED_DATA to run held-out accuracy tests")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(ln) for ln in fh if ln.strip()]


# ---- utterances -------------------------------------------------------------------------------

ANGRY = "你们这什么破服务，我要投诉到12315！"
POSITIVE = "好的，谢谢你，解决得很快"


def test_angry_customer_is_low_with_anger_and_cues(model):
    s, = model.score([ANGRY])
    assert s.emotion_index < 40
    assert s.emotion == "angry" and s.anger_prob > 0.4
    assert s.negative_prob > 0.7
    assert {"12315", "投诉"} <= set(s.escalation)
    # the model alone (no escalation cap, uncalibrated scale) already puts it low
    raw, = model.score([ANGRY], escalation_cap=None, calibrated=False)
    assert raw.emotion_index < 25
    cal, = model.score([ANGRY], escalation_cap=None)
    assert cal.emotion_index < 50


def test_angry_without_lexicon_cue_is_low(model):
    # Upper bounds: 27.2 / 39.0 measured.  The second is sensitive to the in-domain neutral turns ("客服" is
    # frequent in neutral training rows): 38.5 without them, 42.8 with the earlier, larger pool that
    # included the now-labelled evaluation dialogues; the bound leaves room for that trade-off.
    for text, bound in (("你们到底还管不管？三天了都没人处理，气死我了", 40), ("你们这个垃圾客服，浪费我时间", 46)):
        s, = model.score([text])
        assert s.escalation == ()
        assert s.emotion_index < bound, text
        assert s.emotion_index < S.FLAG_THRESHOLD - 10, text
        assert s.emotion == "angry", text


def test_positive_customer_is_high(model):
    for text in (POSITIVE, "问题已经解决了，谢谢，辛苦了！"):
        s, = model.score([text])
        assert s.emotion_index > 60, text
        assert s.negative_prob < 0.3, text
        assert s.escalation == ()


def test_score_shapes_and_types(model):
    out = model.score(["", "   ", ANGRY, POSITIVE])
    assert len(out) == 4
    assert out[0] == out[1] and out[0].emotion_index == 50.0 and out[0].negative_prob == 0.5
    for s in out:
        assert 0.0 <= s.negative_prob <= 1.0 and 0.0 <= s.anger_prob <= 1.0
        assert 0.0 <= s.emotion_index <= 100.0
        assert s.emotion in S.EMOTIONS
        assert math.isclose(sum(p for _, p in s.emotion_probs), 1.0, abs_tol=1e-4)
    with pytest.raises(Exception):
        out[2].emotion_index = 99  # frozen
    assert model.score([]) == []
    assert out[2].emotion_index < out[3].emotion_index


def test_neutral_service_questions_not_flag_worthy(model):
    # Fixed by the weak-labelled in-domain neutral customer turns (JDDC/CSDS/MobileCS) in the
    # emotion head: on the calibrated scale a plain service question is not flag-worthy (< 60).
    texts = ["请问什么时候发货", "在吗", "发票怎么开", "可以帮我查一下物流吗", "我想查一下物流",
             "您好，请问有什么可以帮您"]
    scores = model.score(texts)
    assert all(s.emotion_index >= 60 for s in scores), [(t, s.emotion_index) for t, s in zip(texts, scores)]
    # … while a complaint-toned question stays lower than the plain one
    assert model.score(["为什么还没有发货"])[0].emotion_index < scores[0].emotion_index


@pytest.mark.xfail(strict=True, reason="residual domain bias: bare facts with numbers (order ids) and some "
                                       "questions ('我的订单什么时候到') still score under 60 (55.8 / 49.0); the weak "
                                       "labels only cover question/request forms")
def test_neutral_service_facts_near_neutral(model):
    texts = ["我的订单号是12345678", "我的订单什么时候到"]
    assert all(s.emotion_index >= 60 for s in model.score(texts))


def test_weak_neutral_heldout_turns_mostly_unflagged(model):
    tr = _train_module()
    if not (SHARED / "jddc_sample" / "dev.jsonl").is_file():
        pytest.skip("shared DEV data not present")
    labelled = tr.labelled_dialogue_ids()
    test = ([t for t, _ in tr.load_weak_neutral(SHARED, labelled) if S.split_of(t) == "test"]
            + tr.labelled_weak_neutral(SHARED, labelled))
    assert len(test) >= 250
    idx = [s.emotion_index for s in model.score(test)]
    assert sum(idx) / len(idx) >= 62            # measured 64.1 (62.2 with weight 1)
    assert sum(v < S.FLAG_THRESHOLD for v in idx) / len(idx) <= 0.42   # measured 0.368 (0.464 with weight 1)


def test_session_and_agent_from_model(model):
    calm = model.score(["你好", "好的，谢谢你，解决得很快"])
    upset = model.score(["你好", "你们这什么破服务", "我要投诉到12315！"])
    assert S.session_emotion(upset) < S.session_emotion(calm) - 30
    assert S.is_flagged(S.session_emotion(upset)) and not S.is_flagged(S.session_emotion(calm))
    assert S.session_escalation(upset) == ("12315", "投诉") and S.session_escalation(calm) == ()
    polite = S.agent_attitude(model.score(["非常感谢您的耐心，问题已经为您解决了"]))
    rude = S.agent_attitude(model.score(["你自己弄坏的，别烦我，爱找谁找谁"]))
    assert rude < 50 < polite


# ---- held-out accuracy on the shared DEV data ---------------------------------------------------

def _polarity_test_slice() -> list[tuple[str, int]]:
    out = []
    for name in POLARITY_CORPORA:
        for r in _read(name):
            text = (r.get("text") or "").strip()
            if not text or S.split_of(text) != "test":
                continue
            if name == "sentiment_bdci_car_2018":
                pols = {a["sentiment"] for a in r["aspects"]}
                if pols in ({1}, {-1}):
                    out.append((text, int(pols == {1})))
            else:
                out.append((text, int(r["label"])))
    return out


def test_polarity_heldout_accuracy(model):
    data = _polarity_test_slice()
    assert len(data) >= 300
    y = [lbl for _, lbl in data]
    majority = max(sum(y), len(y) - sum(y)) / len(y)
    pred = [int(p < 0.5) for p in model.negative_probs([t for t, _ in data])]
    acc = sum(p == t for p, t in zip(pred, y)) / len(y)
    assert acc >= MIN_POLARITY_ACC, f"polarity held-out accuracy {acc:.3f} (majority {majority:.3f})"
    assert acc > majority + 0.25


def test_emotion_heldout_accuracy_and_anger_recall(model):
    data = [(r["text"].strip(), r["label"]) for r in _read("sentiment_smp2020_ewect")
            if r["text"].strip() and S.split_of(r["text"]) == "test"]
    assert len(data) >= 500
    pred = [s.emotion for s in model.score([t for t, _ in data])]
    acc = sum(p == t for p, (_, t) in zip(pred, data)) / len(data)
    angry = [p for p, (_, t) in zip(pred, data) if t == "angry"]
    recall = sum(p == "angry" for p in angry) / len(angry)
    assert acc >= MIN_EMOTION_ACC, f"emotion accuracy {acc:.3f}"
    assert recall >= MIN_ANGER_RECALL, f"anger recall {recall:.3f}"


def test_card_matches_artifact_and_split(model):
    card = json.loads((model.path.parent / S.CARD_NAME).read_text("utf-8"))
    assert card["artifact"]["sha256"] == sha256_file(model.path)
    assert card["artifact"]["bytes"] == model.path.stat().st_size < 20_000_000
    # The split rule must not drift, or "held-out" items would have been trained on.
    rows = _read("sentiment_waimai_10k")
    n_test = sum(S.split_of(r["text"]) == "test" for r in rows)
    assert n_test == sum(card["training_data"]["files"]["sentiment_waimai_10k"]["test"].values())


# ---- loading ------------------------------------------------------------------------------------

def test_missing_artifact_names_the_train_script(tmp_path, monkeypatch):
    with pytest.raises(SetupError, match="python scripts/train_sentiment.py"):
        S.SentimentModel.load(tmp_path / "nope.joblib")
    monkeypatch.setenv("QC_PIPELINE_MODELS_DIR", str(tmp_path))
    assert S.default_artifact_path() == tmp_path.resolve() / "sentiment" / S.ARTIFACT_NAME
    with pytest.raises(SetupError, match="python scripts/train_sentiment.py"):
        S.SentimentModel.load()


def test_env_models_dir_and_sha_check(model, tmp_path, monkeypatch):
    d = tmp_path / "sentiment"
    d.mkdir()
    shutil.copy(model.path, d / S.ARTIFACT_NAME)
    shutil.copy(model.path.parent / S.CARD_NAME, d / S.CARD_NAME)
    monkeypatch.setenv("QC_PIPELINE_MODELS_DIR", str(tmp_path))
    again = S.SentimentModel.load()
    assert again.path == (d / S.ARTIFACT_NAME).resolve()
    assert again.score([ANGRY]) == model.score([ANGRY])
    card = json.loads((d / S.CARD_NAME).read_text("utf-8"))
    card["artifact"]["sha256"] = "0" * 64
    (d / S.CARD_NAME).write_text(json.dumps(card), "utf-8")
    with pytest.raises(SetupError, match="sha256"):
        S.SentimentModel.load()
    assert S.SentimentModel.load(verify=False).path == again.path


# ---- escalation lexicon (pure) ------------------------------------------------------------------

@pytest.mark.parametrize("text, cues", [
    (ANGRY, ["12315", "投诉"]),
    ("我要打 1 2 3 1 5", ["12315"]),
    ("再不处理我就打幺二三幺五", ["12315"]),
    ("１２３１５", ["12315"]),
    ("我打12345市民热线", ["12345"]),
    ("我要向工信部申诉", ["投诉", "工信部"]),
    ("我要去消费者协会", ["消协"]),
    ("根据消费者权益保护法你们要赔偿", ["法律"]),
    ("我要去消協投訴", ["投诉", "消协"]),
    ("我要找媒体曝光你们", ["媒体曝光"]),
    ("我会请律师起诉你们", ["法律"]),
    ("你们不处理我就去法院告你们", ["法律"]),
    ("我要向银保监会反映", ["金融监管"]),
    ("我去市场监管局举报你们", ["投诉", "市场监管"]),
    ("叫你们领导来", ["找领导"]),
    ("我要找你们领导", ["找领导"]),
    ("让你们经理接电话", ["找领导"]),
    ("不解决我就投诉", ["投诉"]),
    ("不然我就投诉你们", ["投诉"]),
    ("我要报警", ["报警"]),
])
def test_escalation_cues_found(text, cues):
    assert S.escalation_cues(text) == cues


@pytest.mark.parametrize("text", [
    "您好，请问有什么可以帮您", "我的电话是13812315678", "算了，不投诉了", "我没有要投诉的意思",
    "这个相机曝光补偿怎么调", "多媒体短信收不到", "烟雾报警器一直响", "我找我的客户经理办理", "",
])
def test_escalation_cues_not_found(text):
    assert S.escalation_cues(text) == []


def test_escalation_lexicon_is_configurable():
    lex = S.ESCALATION_LEXICON + (("差评", r"差评"),)
    assert S.escalation_cues("不给退我就给差评", lex) == ["差评"]
    assert S.escalation_cues("不给退我就给差评") == []
    assert isinstance(S.ESCALATION_LEXICON, tuple)


# ---- aggregation (pure) -------------------------------------------------------------------------

def _u(idx: float, neg: float = 0.5) -> S.UtteranceSentiment:
    return S.UtteranceSentiment(negative_prob=neg, emotion="neutral", anger_prob=0.0, emotion_index=idx)


def test_emotion_index_formula():
    neutral = [(c, float(c == "neutral")) for c in S.EMOTIONS]
    happy = [(c, float(c == "happy")) for c in S.EMOTIONS]
    angry = [(c, float(c == "angry")) for c in S.EMOTIONS]
    assert S.emotion_index(0.5, neutral) == 50.0
    assert S.emotion_index(0.0, neutral) == 50.0  # polarity is damped by P(neutral)
    assert S.emotion_index(0.0, happy) == 100.0
    assert S.emotion_index(1.0, angry) == 0.0
    assert S.emotion_index(0.0, happy, escalation=["投诉"]) == S.ESCALATION_CAP
    assert S.emotion_index(0.0, happy, escalation=["投诉"], escalation_cap=None) == 100.0


def test_session_emotion_recency_weighting():
    assert S.session_emotion([]) is None
    assert S.session_emotion([_u(70)]) == 70.0
    # later turns weigh more: upset at the end pulls the session down, and vice versa
    assert S.session_emotion([_u(90), _u(10)]) < 50 < S.session_emotion([_u(10), _u(90)])
    assert S.session_emotion([_u(90), _u(10)], half_life=1.0) == pytest.approx((90 * 0.5 + 10) / 1.5, abs=0.01)
    assert S.session_emotion([_u(90), _u(10)], half_life=math.inf) == 50.0
    assert S.session_emotion([80.0, 20.0], weights=[3, 1]) == 65.0
    with pytest.raises(ValueError):
        S.session_emotion([_u(1), _u(2)], weights=[1.0])
    with pytest.raises(ValueError):
        S.session_emotion([_u(1)], weights=[0.0])
    assert S.recency_weights(3, half_life=1.0) == (0.25, 0.5, 1.0)


def test_flag_threshold_and_agent_attitude():
    assert S.is_flagged(59.9) and not S.is_flagged(60.0) and not S.is_flagged(None)
    assert S.agent_attitude([]) is None
    assert S.agent_attitude([_u(50, neg=0.1), _u(50, neg=0.3)]) == 80.0


# ---- weak-labelled in-domain neutral turns (scripts/train_sentiment.py) -------------------------

def _train_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_sentiment", REPO / "scripts" / "train_sentiment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("text, neutral", [
    ("请问什么时候发货", True), ("在吗", True), ("发票怎么开", True), ("可以帮我查一下物流吗", True),
    ("我想改发票抬头", True),
    ("好的", False),                       # not a question/request
    ("为什么还没有发货", False), ("到底什么时候发货？", False), ("你们怎么还不发货", False),
    ("我要投诉", False), ("我要退货", False), ("能不能快点啊!", False), ("你是不是傻啊，一直重复。。。。", False),
    ("顾客通过点击web咚咚[站点x]信息发送:[订单编号:[订单x]]", False), ("[订单x]", False),
    ("人呢?", False), ("不是说今天送达吗", False), ("什么时候解决？", False),   # impatience / broken promise
    ("今天竟然给我停机了？请尽快处理", False), ("试过了没用，怎么办", False), ("它在干什么啊，这么耗电", False),
])
def test_weak_neutral_rule(text, neutral):
    assert _train_module().is_weak_neutral(text) is neutral


def test_weak_neutral_excludes_labelled_dialogues(tmp_path):
    tr = _train_module()
    labelled = tr.labelled_dialogue_ids()
    assert len(labelled) >= 204  # eval/item_labels/labels_v2.jsonl
    bad_id = sorted(labelled)[0]
    (tmp_path / "jddc_sample").mkdir()
    rows = [{"dialogue_id": bad_id, "turns": [{"role": "customer", "text": "请问发票怎么开"}]},
            {"dialogue_id": "jddc_not_labelled", "turns": [{"role": "customer", "text": "请问什么时候发货"},
                                                          {"role": "agent", "text": "请问还有什么可以帮您"}]}]
    (tmp_path / "jddc_sample" / "dev.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    assert tr.load_weak_neutral(tmp_path, labelled) == [("请问什么时候发货", "neutral")]
    assert len(tr.load_weak_neutral(tmp_path, set())) == 2
    # the labelled dialogue's turn is the extra held-out set, unless the same text is also in the pool
    assert tr.labelled_weak_neutral(tmp_path, labelled) == ["请问发票怎么开"]
    assert tr.labelled_weak_neutral(tmp_path, {bad_id, "jddc_not_labelled"}) == ["请问发票怎么开", "请问什么时候发货"]
    assert tr.labelled_weak_neutral(tmp_path, set()) == []
    # on the real DEV data: no text that occurs only in labelled dialogues is selected
    if not (SHARED / "jddc_sample" / "dev.jsonl").is_file():
        pytest.skip("shared DEV data not present")
    selected = {S.normalize_text(t) for t, _ in tr.load_weak_neutral(SHARED, labelled)}
    in_labelled, elsewhere = set(), set()
    for name in tr.DIALOGUE_CORPORA:
        for d in _read(name) if (SHARED / name / "dev.jsonl").is_file() else []:
            texts = {S.normalize_text(t["text"]) for t in d["turns"] if t["role"] == "customer"}
            (in_labelled if d["dialogue_id"] in labelled else elsewhere).update(texts)
    assert selected and not (selected & (in_labelled - elsewhere))
