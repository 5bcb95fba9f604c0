"""Turn classifiers (qc_pipeline.scoring.turn_model) and the ``classifier`` rule operator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from qc_pipeline.errors import ConfigError
from qc_pipeline.scoring.card import load_scorecard, parse_scorecard, resolve_scorecard_path
from qc_pipeline.scoring.operators.classifier import model_path
from qc_pipeline.scoring.turn_model import TurnModel, TurnModelError, load_turn_model, to_dict
from tests.test_scoring import chat

SHIPPED = resolve_scorecard_path("configs/scorecards/solution_turn-v1.json")

# agent lines of the kind the dev dialogues hold (written for this test): answers and non-answers
ANSWERS = ["这款洗衣机是预售商品，仓库会在本周五统一发出", "重启一下路由器就好了", "已经帮您申请退款，1-3个工作日到账",
           "OK 已经 退款", "Wifi 密码 在路由器背面",
           "周末也营业的呢", "需要联系商家处理，商家电话在订单页", "您可以拒收后重新下单", "已为您反馈给售后专员，24小时内联系您"]
OTHERS = ["您好，有什么可以帮您", "请问您的订单号是多少呢？", "很高兴为您服务，祝您生活愉快，再见", "Hello 您好\t请问",
          "请您稍等，正在为您查询", "感谢您的理解与支持", "麻烦给个评价哦", "请私信提供您的手机号码"]


def _fitted(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    lr = LogisticRegression(C=4.0, class_weight="balanced", max_iter=1000)
    lr.fit(vec.fit_transform(ANSWERS + OTHERS), [1] * len(ANSWERS) + [0] * len(OTHERS))
    path = tmp_path / "m.json"
    path.write_text(json.dumps(to_dict(vec, lr, {"test": True}), ensure_ascii=False), "utf-8")
    return vec, lr, path


def test_probabilities_are_scikit_learns(tmp_path):
    vec, lr, path = _fitted(tmp_path)
    model = TurnModel.load(path)
    # lower-casing, whitespace folding (tabs, runs, ideographic spaces), unknown n-grams, empty text
    texts = ["订单已经发出了，明天到", "您好  请问还有其他问题吗", "ok", "OK", "WIFI 密码", "hello\t您好 \t 请问", "a\tb",
             "  \t ", "\u3000\u3000退款", "ABC 退款到账了吗", "", "😀"]
    want = lr.predict_proba(vec.transform(texts))[:, 1]
    np.testing.assert_array_equal(model.proba(texts), want)


def test_the_shipped_solution_model_tells_answers_from_small_talk():
    model = TurnModel.load(SHIPPED)
    assert model.meta["cv_roc_auc"] > 0.85 and model.meta["positives"] > 500
    assert not any("labels_v2_c" in f or "labels_v2_e" in f for f in model.meta["labels"])  # never the held-out set
    answers = model.proba(["您好，这款洗衣机是预售商品，仓库会在本周五统一发出，发出后短信通知您", "重启一下路由器就好了"])
    chatter = model.proba(["很高兴遇到您这么善解人意的客户，请问还有其他还可以帮到您的吗?", "麻烦您点击小红心给个评价哦"])
    threshold = _default_card()["rules"]["solution_or_transfer"]["where"]["classifier"]["above"]   # the card's
    assert answers.min() > 0.5 and chatter.max() < threshold


@pytest.mark.parametrize("mangle, why", [
    (lambda d: {**d, "format": "something/else"}, "is not a"),
    (lambda d: {**d, "coef": d["coef"][:-1]}, "do not fit together"),
    (lambda d: {k: v for k, v in d.items() if k != "idf"}, "missing or malformed"),
    (lambda d: {**d, "vocabulary": list(d["vocabulary"])}, "missing or malformed"),
    (lambda d: {**d, "meta": ["not", "a", "mapping"]}, "missing or malformed"),
])
def test_broken_model_files_are_refused_with_the_reason(tmp_path, mangle, why):
    _, _, path = _fitted(tmp_path)
    path.write_text(json.dumps(mangle(json.loads(path.read_text("utf-8")))), "utf-8")
    with pytest.raises(TurnModelError, match=why):
        TurnModel.load(path)


def test_a_file_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "m.joblib").write_bytes(b"\x80\x02}q\x00(X\x06")          # e.g. the sentiment pickle
    with pytest.raises(TurnModelError, match="not a JSON turn-classifier file"):
        TurnModel.load(tmp_path / "m.joblib")


def _default_card() -> dict:
    return yaml.safe_load(SHIPPED.with_name("default.yaml").read_text("utf-8"))


def _card_with(body) -> dict:
    data = _default_card()
    data["rules"]["solution_or_transfer"]["where"] = {"classifier": body}
    return data


@pytest.mark.parametrize("body, key", [
    ({"model": "nope.json", "above": 0.3}, "rules.solution_or_transfer.where.classifier.model"),
    ({"model": "solution_turn-v1.json"}, "rules.solution_or_transfer.where.classifier"),
    ({"model": "solution_turn-v1.json", "above": 1.5}, "rules.solution_or_transfer.where.classifier.above"),
    ({"model": "solution_turn-v1.json", "above": 0.3, "top": 1}, "rules.solution_or_transfer.where.classifier.top"),
])
def test_classifier_config_errors_name_the_key(tmp_path, body, key):
    with pytest.raises(ConfigError) as e:
        parse_scorecard(_card_with(body), str(tmp_path / "card.yaml"))
    assert e.value.key == key


def test_a_copied_card_finds_its_model_next_to_it_or_among_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "mine" / "card.yaml"
    copy.parent.mkdir()
    copy.write_text(SHIPPED.with_name("default.yaml").read_text("utf-8"), "utf-8")
    assert model_path("solution_turn-v1.json", str(copy)) == SHIPPED.resolve()
    assert model_path("solution_turn-v1.json", None) == SHIPPED.resolve()          # a card given as a mapping
    with pytest.raises(TurnModelError, match="not found"):
        model_path(str(tmp_path / "absent.json"), str(copy))
    _, _, own = _fitted(tmp_path)
    (tmp_path / "solution_turn-v1.json").write_bytes(own.read_bytes())           # the current folder's next
    assert model_path("solution_turn-v1.json", str(copy)) == (tmp_path / "solution_turn-v1.json").resolve()
    (copy.parent / "solution_turn-v1.json").write_bytes(own.read_bytes())        # the card's own model wins
    assert model_path("solution_turn-v1.json", str(copy)) == (copy.parent / "solution_turn-v1.json").resolve()
    load_turn_model.cache_clear()
    card = load_scorecard(copy)
    hits = card.rule("solution_or_transfer").evaluate(chat([("customer", "你们周末营业吗"),
                                                           ("agent", "周末也营业的呢")]))
    assert hits.matched
    load_turn_model.cache_clear()


def test_classifier_hits_utterances_with_their_probability(tmp_path):
    data = _default_card()
    data["rules"]["answer_like"] = {"classifier": {"model": "solution_turn-v1.json", "above": 0.5}, "role": "agent"}
    data["rules"]["chatter"] = {"classifier": {"model": "solution_turn-v1.json", "below": 0.25}, "role": "agent"}
    card = parse_scorecard(data, str(tmp_path / "card.yaml"))
    lines = [("customer", "路由器连不上怎么办"), ("agent", "您好"), ("agent", "重启一下路由器就好了"),
             ("customer", "好了，谢谢"), ("agent", "麻烦您点击小红心给个评价哦")]
    ctx = chat(lines)
    answer_like, chatter = card.rule("answer_like").evaluate(ctx), card.rule("chatter").evaluate(ctx)
    assert [h.turn_index for h in answer_like.hits] == [2]
    assert answer_like.hits[0].text.startswith("p=0.") and answer_like.hits[0].text.endswith("重启一下路由器就好了")
    assert 4 in {h.turn_index for h in chatter.hits} and 2 not in {h.turn_index for h in chatter.hits}


def _train_script():
    import importlib.util

    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location("train_turn_model", REPO / "scripts" / "train_turn_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["labels_v2_c1.jsonl", "labels_v2_e3.jsonl", "labels_v2_b.jsonl"])
def test_training_refuses_held_out_and_second_pass_labels(name):
    with pytest.raises(SystemExit, match="never trained on"):
        _train_script().label_files([f"eval/item_labels/{name}"])


def test_the_shipped_model_is_what_the_training_script_makes(shared, tmp_path):
    script = _train_script()
    out = tmp_path / "m.json"
    import sys
    argv, sys.argv = sys.argv, ["train_turn_model.py", "--shared", str(shared), "--out", str(out)]
    try:
        script.main()
    finally:
        sys.argv = argv
    assert out.read_bytes() == SHIPPED.read_bytes()
