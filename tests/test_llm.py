"""LLM client, judge, `llm` operator and summarize stage against a scripted HTTP server on 127.0.0.1.
(The same code against a real llama.cpp server: tests/test_llm_server.py.)"""

import dataclasses
import json
import logging
import socket

import pytest

from qc_pipeline.config import LlmConfig, PipelineConfig, load_config
from qc_pipeline.errors import ConfigError
from qc_pipeline.llm import client as C
from qc_pipeline.llm.client import LlmClient
from qc_pipeline.llm.judge import check_answer, judge, parse_json_object
from qc_pipeline.llm.prompts import chunk_transcript
from qc_pipeline.records import CallRecord, CallSource, ChatTurn, Utterance
from tests.llm_stub import StubServer

DIALOGUE = [("customer", "我买的耳机坏了，左边没有声音，太气人了"),
            ("agent", "非常抱歉给您带来不便，您先别着急"),
            ("agent", "您是说左耳没有声音对吗？"),
            ("customer", "对，就是左边"),
            ("agent", "这边帮您申请换货，新耳机三天内发出"),
            ("customer", "好的，谢谢")]


def utts(dialogue=DIALOGUE):
    return [Utterance(turn_index=i, role=r, channel=-1, start=None, end=None, text=t)
            for i, (r, t) in enumerate(dialogue)]


def cfg(url, tmp_path, **kw):
    base = dict(base_url=url, model="stub", timeout_s=2.0, max_retries=2, backoff_s=0.01,
                cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return LlmConfig(**base)


def answer(**kw):
    return json.dumps({"answer": "yes", "turns": [1], "quote": "非常抱歉给您带来不便", "reason": "先道歉安抚", **kw},
                      ensure_ascii=False)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ client
def test_retries_with_backoff_then_succeeds(tmp_path):
    slept = []
    with StubServer([("status", 503), ("status", 502), ("answer", "ok")]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, backoff_s=0.5), sleep=slept.append)
        r = c.chat([{"role": "user", "content": "hi"}])
    assert r.ok and r.text == "ok" and r.attempts == 3
    assert slept == [0.5, 1.0]          # exponential backoff
    assert len(srv.requests) == 3 and c.stats.retries == 2


def test_no_retry_on_client_error_and_errors_never_raise(tmp_path):
    with StubServer([("status", 400)]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path))
        r = c.chat([{"role": "user", "content": "hi"}])
    assert (r.error, r.status, r.text, len(srv.requests)) == (C.HTTP_ERROR, 400, None, 1)
    with StubServer([("garbage",)]) as srv:
        assert LlmClient(cfg(srv.url, tmp_path)).chat([{"role": "user", "content": "x"}]).error == C.BAD_RESPONSE


def test_timeout_and_server_down(tmp_path):
    with StubServer([("sleep", 1.5, "late")]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, timeout_s=1.0, max_retries=1))
        r = c.chat([{"role": "user", "content": "hi"}])
    assert r.error == C.TIMEOUT and r.attempts == 2
    down = LlmClient(cfg(f"http://127.0.0.1:{free_port()}/v1", tmp_path, max_retries=1))
    r = down.chat([{"role": "user", "content": "hi"}])
    assert r.error == C.UNREACHABLE and r.attempts == 2


def test_cache_makes_reruns_free_and_is_keyed_by_model_and_prompt(tmp_path):
    msgs = [{"role": "user", "content": "同一个问题"}]
    with StubServer([("answer", "first"), ("answer", "second")]) as srv:
        a = LlmClient(cfg(srv.url, tmp_path))
        assert a.chat(msgs).text == "first"
        again = LlmClient(cfg(srv.url, tmp_path))          # a new worker / a re-run
        r = again.chat(msgs)
        assert (r.text, r.cached, len(srv.requests)) == ("first", True, 1)
        other = LlmClient(cfg(srv.url, tmp_path, model="other-model"))
        assert other.chat(msgs).text == "second" and len(srv.requests) == 2
        assert again.chat([{"role": "user", "content": "另一个问题"}]).text == "second"
    failed_not_cached = tmp_path / "c2"
    with StubServer([("status", 500)]) as srv:
        LlmClient(cfg(srv.url, tmp_path, cache_dir=str(failed_not_cached), max_retries=0)).chat(msgs)
    assert not list(failed_not_cached.rglob("*.json"))


def test_session_budget_counts_cache_hits_so_reruns_match(tmp_path):
    with StubServer([("answer", "a")]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, max_calls_per_session=2))
        s = c.session("call-1")
        assert c.session("call-1") is s
        out = [c.chat([{"role": "user", "content": str(i)}], s) for i in range(3)]
        assert [r.error for r in out] == [None, None, C.BUDGET]
        rerun = LlmClient(cfg(srv.url, tmp_path, max_calls_per_session=2))
        s2 = rerun.session("call-1")
        out2 = [rerun.chat([{"role": "user", "content": str(i)}], s2) for i in range(3)]
    assert [r.error for r in out2] == [None, None, C.BUDGET] and s2.cache_hits == 2
    assert len(srv.requests) == 2


def test_api_key_is_sent_but_never_stored_logged_or_cached(tmp_path, monkeypatch, caplog):
    secret = "sk-test-SECRET-12345"
    monkeypatch.setenv("QC_TEST_LLM_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with StubServer([("status", 503), ("answer", "ok")]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, api_key_env="QC_TEST_LLM_KEY"), sleep=lambda s: None)
        assert c.chat([{"role": "user", "content": "hi"}]).ok
    assert srv.headers[-1]["Authorization"] == f"Bearer {secret}"
    cached = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    assert cached and secret not in cached
    assert secret not in caplog.text and secret not in repr(c) and secret not in repr(c.cfg)


def test_concurrency_limit_per_worker(tmp_path):
    import threading

    with StubServer([("sleep", 0.2, "x")]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, max_concurrency=2, cache_dir=""))
        threads = [threading.Thread(target=c.chat, args=([{"role": "user", "content": str(i)}],)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(srv.requests) == 6 and srv.max_in_flight == 2


# ------------------------------------------------------------------ judge
def test_parse_json_tolerates_fences_and_chatter():
    assert parse_json_object('好的```json\n{"answer": "yes", "quote": "a{b}"}\n```') == {"answer": "yes", "quote": "a{b}"}
    assert parse_json_object("no json here") is None
    assert parse_json_object('{"answer": "yes", ') is None


def test_evidence_is_checked_verbatim_against_the_cited_turns():
    u = utts()
    ok = check_answer(answer(), u)
    assert ok.ok and ok.answer == "yes" and ok.turns == (1,) and ok.quote_found == 1
    # whitespace and full-width forms do not matter, words do
    assert check_answer(answer(quote="非常抱歉 给您带来不便"), u).ok
    assert check_answer(answer(quote="非常抱歉给您带来了不便"), u).error == C.NO_EVIDENCE
    # the quote exists, but not in the turn the model cites
    assert check_answer(answer(turns=[4]), u).error == C.NO_EVIDENCE
    assert check_answer(answer(quote=""), u).error == C.NO_EVIDENCE          # yes needs evidence
    assert check_answer(answer(answer="no", quote="", turns=[]), u).answer == "no"
    assert check_answer(answer(answer="maybe"), u).error == C.BAD_ANSWER
    assert check_answer("我认为是的", u).error == C.BAD_ANSWER
    assert check_answer(answer(answer="是"), u).answer == "yes"
    # cited turn outside the rule's scope (e.g. role: agent but the model cites the customer)
    assert check_answer(answer(turns=[0], quote="左边没有声音"), u, scope_turns={1, 2, 4}).error == C.OUT_OF_SCOPE


def test_chunks_keep_every_turn_and_never_cut():
    long = [("customer" if i % 2 else "agent", f"第{i}句" + "内容" * 40) for i in range(30)]
    long.append(("customer", "超长的一句" * 300))
    u = utts(long)
    chunks = chunk_transcript(u, max_chars=600)
    assert len(chunks) > 5 and all(sum(len(x) + 1 for x in c.lines) <= 600 + 1 for c in chunks)
    assert set().union(*(c.turns for c in chunks)) == {x.turn_index for x in u}
    text = "".join(line.split("：", 1)[1] for c in chunks for line in c.lines if line.startswith("[30]"))
    assert text == u[30].text                      # the over-long turn arrives whole, in pieces
    assert chunks[0].of == len(chunks) and [c.part for c in chunks] == list(range(1, len(chunks) + 1))


def test_judge_stops_at_first_verified_yes_and_reports_failed_chunks(tmp_path):
    u = utts([(("agent", "普通回复" + "嗯" * 50)) for _ in range(10)] + DIALOGUE)
    u = [dataclasses.replace(x, turn_index=i) for i, x in enumerate(u)]

    def script(body):
        prompt = body["messages"][-1]["content"]
        if "非常抱歉给您带来不便" in prompt:
            return answer(turns=[11])
        return json.dumps({"answer": "no", "turns": [], "quote": "", "reason": "没有"}, ensure_ascii=False)

    with StubServer([script]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, max_prompt_chars=500))
        s = c.session("c")
        v = judge(c, s, "坐席是否安抚了客户", u)
    assert v.ok and v.answer == "yes" and v.turns == (11,) and v.requests == len(srv.requests) > 1
    # a budget too small for all chunks: an error, not a verdict on part of the call
    with StubServer([script]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, max_prompt_chars=500, max_calls_per_session=1, cache_dir=""))
        s = c.session("c")
        v = judge(c, s, "坐席是否安抚了客户", u)
    assert v.error == C.BUDGET and srv.requests == [] and s.budget.used == 0
    # one chunk fails, the others say no: the verdict is the failure (no "no" for an unread part)
    with StubServer([("answer", '{"answer": "no", "turns": [], "quote": "", "reason": ""}'), ("status", 400)]) as srv:
        c = LlmClient(cfg(srv.url, tmp_path, max_prompt_chars=500, cache_dir=""))
        v = judge(c, None, "x", u)
    assert v.error == C.HTTP_ERROR


# ------------------------------------------------------------------ operator
def _ctx(dialogue=DIALOGUE):
    from qc_pipeline.scoring.context import SessionContext

    return SessionContext(utterances=utts(dialogue))


def _rule(spec: dict, rule_id: str):
    """A compiled card rule (the scorecard compiler builds operators, as a card would)."""
    from qc_pipeline.scoring.operators.compiler import Compiler

    return Compiler({}).compile(spec, "rule", rule_id)


def _soothe_rule(**kw):
    from qc_pipeline.scoring.operators.base import Scope
    from qc_pipeline.scoring.operators.llm import LlmRule

    fallback = _rule({"keyword": ["抱歉"], "role": "agent"}, "soothing")
    return LlmRule(rule_id="item:soothe", scope=Scope(role="agent"), criterion="坐席是否在给出解决方案之前先安抚了客户的情绪",
                   fallback=fallback, **kw)


def test_llm_rule_hits_carry_the_verified_quote(tmp_path):
    from qc_pipeline.scoring.operators.llm import LlmRuntime

    with StubServer([("answer", answer(turns=[1]))]) as srv:
        ctx = _ctx()
        ctx.llm = rt = LlmRuntime.for_call(cfg(srv.url, tmp_path), "call-1")
        out = _soothe_rule().evaluate(ctx)
    assert out.matched and [h.turn_index for h in out.hits] == [1]
    assert out.hits[0].text.startswith("llm: 非常抱歉给您带来不便") and rt.errors == []
    prompt = srv.requests[0]["messages"][-1]["content"]
    assert "只能引用这些轮次作为依据：1、2、4" in prompt and "[0] 客户：我买的耳机坏了" in prompt  # context: all turns


@pytest.mark.parametrize("action, code", [(("answer", "不是JSON"), C.BAD_ANSWER), (("status", 500), C.HTTP_ERROR),
                                          (("answer", answer(quote="抱歉抱歉我们马上处理")), C.NO_EVIDENCE)])
def test_llm_failure_falls_back_to_rules_and_is_recorded(tmp_path, action, code):
    from qc_pipeline.scoring.operators.combinators import Not
    from qc_pipeline.scoring.operators.llm import LlmRuntime

    no_soothing = [("customer", "耳机坏了"), ("agent", "帮您换货")]
    with StubServer([action]) as srv:
        for dialogue, expect in ((DIALOGUE, True), (no_soothing, False)):
            ctx = _ctx(dialogue)
            ctx.llm = rt = LlmRuntime.for_call(cfg(srv.url, tmp_path, max_retries=0, cache_dir=""), "c")
            rule = _soothe_rule()
            assert rule.evaluate(ctx).matched is expect        # the keyword fallback decides
            assert Not(rule_id="n", child=rule).evaluate(ctx).matched is (not expect)
            assert rt.errors and rt.errors[0] == ("item:soothe", code)


def test_llm_rule_offline_and_empty_scope_ask_nothing(tmp_path):
    from qc_pipeline.scoring.operators.base import Scope
    from qc_pipeline.scoring.operators.llm import LlmRuntime

    assert _soothe_rule().evaluate(_ctx()).matched            # no LLM configured: fallback, no error
    with StubServer([("answer", answer())]) as srv:
        ctx = _ctx()
        ctx.llm = LlmRuntime.for_call(cfg(srv.url, tmp_path), "c")
        gate = _rule({"keyword": ["投诉单"], "role": "agent"}, "cue")   # no turn has it
        rule = dataclasses.replace(_soothe_rule(), scope=Scope(role="agent", where=gate))
        assert not rule.evaluate(ctx).matched
    assert srv.requests == []


def test_compile_llm_names_the_key():
    from qc_pipeline.scoring.operators.base import Scope
    from qc_pipeline.scoring.operators.compiler import Compiler
    from qc_pipeline.scoring.operators.llm import compile_llm

    comp = Compiler({"soothing": {"keyword": ["抱歉"]}}, source="card.yaml")
    node = compile_llm(comp, {"criterion": "坐席是否安抚", "fallback": {"ref": "soothing"},
                              "few_shot": [{"dialogue": "[0] 客户：坏了\n[1] 坐席：抱歉", "answer": "yes", "turns": [1],
                                            "quote": "抱歉", "reason": "道歉"}]}, "items[0].pass.llm", "item:x", Scope())
    assert node.few_shot[0].turns == (1,) and node.fallback is not None
    for body, key in (({}, "items[0].pass.llm.criterion"),
                      ({"criterion": "x", "few_shot": [{"dialogue": "d", "answer": "maybe"}]},
                       "items[0].pass.llm.few_shot[0].answer"),
                      ({"criterion": "x", "fallback": {"ref": "nope"}}, "items[0].pass.llm.fallback.ref"),
                      ({"criterion": "x", "temperature": 1}, "items[0].pass.llm.temperature")):
        with pytest.raises(ConfigError) as err:
            compile_llm(comp, body, "items[0].pass.llm", "item:x", Scope())
        assert err.value.key == key


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("overrides, key", [
    (("llm.base_url=gpu-host:8000",), "llm.base_url"),
    (("llm.base_url=http://h:8000/v1",), "llm.model"),
    (("llm.api_key_env=sk-abc123-xyz",), "llm.api_key_env"),
    (("llm.max_concurrency=0",), "llm.max_concurrency"),
    (("summary.duration_targets_min={投拆: 5}",), "summary.duration_targets_min.投拆"),
    (("summary.duration_targets_min={咨询: -1}",), "summary.duration_targets_min.咨询"),
    (("summary.reasons={物流: 快递}",), "summary.reasons.物流"),
    (("summary.call_types={}",), "summary.call_types"),
])
def test_llm_and_summary_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert err.value.key == key


def test_no_llm_by_default():
    assert PipelineConfig().llm.base_url is None
    from qc_pipeline.llm.client import get_client

    assert get_client(PipelineConfig().llm) is None


# ------------------------------------------------------------------ summarize stage
def _chat_record(dialogue, times=False):
    turns = tuple(ChatTurn(role=r, text=t, start=float(i * 40) if times else None, end=float(i * 40 + 30) if times else None)
                  for i, (r, t) in enumerate(dialogue))
    from qc_pipeline.stages.chat import ChatStage

    return ChatStage().process(CallRecord(source=CallSource(call_id="s1", kind="chat", chat_turns=turns)))


def test_summary_without_llm_uses_keywords_and_duration_targets():
    from qc_pipeline.stages.summarize import SummarizeStage

    stage = SummarizeStage(PipelineConfig())
    stage.setup()
    complaint = [("customer", "我要投诉，快递三天了还没送到"), ("agent", "抱歉，帮您催促物流")] * 4
    out = stage.process(_chat_record(complaint, times=True))      # 8 turns × 40 s = 5 min 10 s
    s = out.summary
    assert (s.call_type, s.call_type_source, s.reason, s.reason_source) == ("投诉", "keywords", "物流配送", "keywords")
    assert s.reason_text == "我要投诉，快递三天了还没送到" and s.resolved is None and s.problem is None
    assert (s.duration_target_s, s.over_duration_target) == (480.0, False) and "over_duration_target" not in out.flags
    consult = [("customer", "请问这个耳机支持降噪吗"), ("agent", "支持的")] * 4
    out = stage.process(_chat_record(consult, times=True))
    assert out.summary.call_type == "咨询" and out.summary.over_duration_target is True
    assert "over_duration_target" in out.flags
    assert stage.process(_chat_record(consult)).summary.over_duration_target is None   # no times: unknown


def test_summary_with_llm_and_its_failure(tmp_path):
    from qc_pipeline.stages.summarize import SummarizeStage

    reply = json.dumps({"problem": "耳机左边没声音", "action": "申请换货", "outcome": "三天内发出新耳机",
                        "call_type": "办理类", "reason": "商品质量", "reason_text": "耳机故障，电话13812345678",
                        "resolved": True}, ensure_ascii=False)
    with StubServer([("answer", reply)]) as srv:
        pc = dataclasses.replace(PipelineConfig(), llm=cfg(srv.url, tmp_path))
        stage = SummarizeStage(pc)
        stage.setup()
        rec = stage.process(_chat_record(DIALOGUE))
    s = rec.summary
    assert (s.call_type, s.reason, s.resolved, s.call_type_source, s.llm_requests) == ("办理", "商品质量", True, "llm", 1)
    assert s.problem == "耳机左边没声音"
    from qc_pipeline.scoring.pii import mask_record  # the one masking place, applied before any sink

    assert "13812345678" not in mask_record(rec).summary.reason_text and "13812345678" in s.reason_text
    with StubServer([("answer", reply.replace("商品质量", "天气"))]) as srv:   # not a taxonomy name
        pc = dataclasses.replace(PipelineConfig(), llm=cfg(srv.url, tmp_path, cache_dir=""))
        stage = SummarizeStage(pc)
        stage.setup()
        out = stage.process(_chat_record(DIALOGUE))
    assert out.summary.llm_error == C.BAD_ANSWER and "llm_error" in out.flags
    assert out.summary.call_type_source == "keywords" and out.summary.call_type == "咨询"


def test_batch_with_the_llm_server_down_completes_and_flags(tmp_path, samples):
    from qc_pipeline.runner import run_batch
    from qc_pipeline.sinks.parquet import read_table

    cfg = load_config(overrides=(f"llm.base_url=http://127.0.0.1:{free_port()}/v1", "llm.model=qwen",
                                 "llm.max_retries=0", "llm.cache_dir=", "run.progress=false"))
    run_batch([str(samples / "chats")], str(tmp_path / "out"), cfg, workers=1)
    sessions = read_table(tmp_path / "out", "sessions").to_pylist()
    summaries = read_table(tmp_path / "out", "summaries").to_pylist()
    assert len(sessions) == len(summaries) == 3
    assert all(s["status"] == "ok" and "llm_error" in s["flags"] for s in sessions)
    assert {r["llm_error"] for r in summaries} == {C.UNREACHABLE}
    assert all(r["call_type_source"] == "keywords" and r["call_type"] for r in summaries)
    assert read_table(tmp_path / "out", "summaries").schema.metadata[b"qc_pipeline.schema_version"] == b"1"


def test_over_duration_target_card_item():
    from qc_pipeline.scoring.card import Item
    from qc_pipeline.scoring.engine import score_item
    from qc_pipeline.scoring.operators.call import OverDurationTarget
    from qc_pipeline.stages.summarize import SummarizeStage

    stage = SummarizeStage(PipelineConfig())
    item = Item(id="handling_time", name="通话时长达标", weight=5, role="agent", mode="deduction",
                violation=OverDurationTarget(rule_id="item:handling_time"), per_violation=5)
    for dialogue, over in (([("customer", "请问这个耳机支持降噪吗"), ("agent", "支持的")] * 4, True),
                           ([("customer", "我要投诉，快递还没到"), ("agent", "抱歉，帮您催促")] * 4, False)):
        ctx = _ctx()
        ctx.summary = stage.process(_chat_record(dialogue, times=True)).summary
        r = score_item(item, ctx)
        assert (r.points, r.violations) == ((0.0, 1) if over else (5.0, 0))
    assert score_item(item, _ctx()).points == 5.0            # not summarized: no violation


LLM_CARD = """
id: llm-card
version: "1"
items:
  - id: soothe
    name: 先安抚
    weight: 100
    pass:
      llm:
        criterion: 坐席是否在给出解决方案之前先安抚了客户的情绪
        fallback: {keyword: [抱歉]}
      role: agent
"""


def test_score_stage_asks_the_llm_for_llm_items_and_flags_its_failure(tmp_path):
    """End to end through the score stage: the card's llm item is judged by the server; a down server
    falls back to the item's rule (same points here) and flags the session llm_error."""
    from qc_pipeline.config import ScoringConfig
    from qc_pipeline.stages.score import ScoreStage

    card = tmp_path / "card.yaml"
    card.write_text(LLM_CARD, "utf-8")
    scoring = ScoringConfig(scorecard=str(card), sentiment=False)
    rec = _chat_record(DIALOGUE)
    with StubServer([("answer", answer(turns=[1]))]) as srv:
        stage = ScoreStage(scoring, llm=cfg(srv.url, tmp_path, cache_dir=""))
        stage.setup()
        out = stage.process(rec)
    item = out.score.items[0]
    assert item.points == 100 and item.evidence[0].text.startswith("llm: 非常抱歉")
    assert len(srv.requests) == 1 and "llm_error" not in out.flags
    stage = ScoreStage(scoring, llm=cfg(f"http://127.0.0.1:{free_port()}/v1", tmp_path, max_retries=0, cache_dir=""))
    stage.setup()
    out = stage.process(rec)
    assert out.score.items[0].points == 100 and "llm" not in out.score.items[0].evidence[0].text
    assert "llm_error" in out.flags
    # no LLM configured: the fallback decides and nothing is flagged
    stage = ScoreStage(scoring)
    stage.setup()
    out = stage.process(rec)
    assert out.score.items[0].points == 100 and "llm_error" not in out.flags
