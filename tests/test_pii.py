"""Personal numbers (issue 11, item 1): what counts as a phone / ID / bank-card number, and a PII-laden
run whose every table and every export format is scanned for anything left unmasked."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from qc_pipeline.config import load_config
from qc_pipeline.scoring.pii import find_pii, mask_text, mask_turns

PHONE, PHONE2, ID_CARD, BANK = "13812345678", "13987654321", "110101199003074514", "6222021234567890128"
RAW = (PHONE, PHONE2, ID_CARD, BANK)


def kinds(text: str) -> list[str]:
    return [h.kind for h in find_pii(text)]


def test_numbers_joined_by_a_list_comma_are_each_found_and_masked():
    text = f"两个号码{PHONE}、{PHONE2}都要查"
    assert [(h.kind, h.digits) for h in find_pii(text)] == [("phone", PHONE), ("phone", PHONE2)]
    assert mask_text(text)[0] == "两个号码138****5678、139****4321都要查"


@pytest.mark.parametrize("text", ["我的电话是+86 138 1234 5678", "+8613812345678", "0086 13812345678",
                                  "幺三八 幺二三四 五六七八"])
def test_country_prefix_and_grouped_digits(text):
    assert [(h.kind, h.digits) for h in find_pii(text)] == [("phone", PHONE)]
    masked = mask_text(text)[0]
    assert "138****5678" in masked and "1234" not in masked and "幺二三四" not in masked


def test_a_number_continued_in_the_speakers_next_turn_is_masked_in_both_turns():
    out = mask_turns(["我的手机号是138 1234", "嗯，您说", "5678，麻烦尽快处理"], ["customer", "agent", "customer"])
    assert [text for text, _ in out] == ["我的手机号是138****", "嗯，您说", "5678，麻烦尽快处理"]
    # the other speaker's digits do not continue a number
    other = mask_turns(["我的手机号是138 1234", "5678"], ["customer", "agent"])
    assert [text for text, _ in other] == ["我的手机号是138 1234", "5678"]


def test_id_cards_need_region_birth_date_and_checksum_and_no_letters_glued():
    assert kinds(ID_CARD) == ["id_card"]
    assert kinds("身份证11010119900307451X号") == []          # wrong check digit
    # right check digits, wrong content
    assert kinds("990101199003074518") == []                  # 99: no such province
    assert kinds("110101199002304517") == []                  # 30 February
    assert kinds("110101210003074519") == []                  # born in the future
    assert kinds("订单AB" + ID_CARD) == [] and kinds(ID_CARD + "cd") == []   # a code, not an ID
    assert kinds("身份证号 " + ID_CARD + "。") == ["id_card"]
    assert kinds("110101900307451") == ["id_card"]            # the old 15-digit form
    assert kinds("SN" + BANK) == [] and kinds("卡号" + BANK) == ["bank_card"]
    # an 18-digit number that does not validate (a digit misheard) is still masked, not reported
    assert kinds("110101199003074515") == [] and mask_text("110101199003074515")[0] == "110***********4515"


# -- a PII-laden run: every table, every export format -----------------------------------------

SESSIONS = [
    {"dialogue_id": "readback", "agent_id": "A1", "team": "t1", "turns": [
        {"role": "customer", "text": f"你好，我的手机号是{PHONE}，帮我查一下话费账单"},
        {"role": "agent", "text": f"好的，跟您确认一下，您的手机号是{PHONE}对吗？我这边帮您查询账单"},
        {"role": "customer", "text": "对的，谢谢"}]},
    {"dialogue_id": "joined", "agent_id": "A1", "team": "t1", "turns": [
        {"role": "agent", "text": "您好，请问有什么可以帮您"},
        {"role": "customer", "text": f"我有两个号码{PHONE}、{PHONE2}都要查一下，投诉你们乱扣费"},
        {"role": "agent", "text": f"好的，您的号码是{PHONE}、{PHONE2}对吗"}]},
    {"dialogue_id": "intl", "agent_id": "A2", "team": "t1", "turns": [
        {"role": "customer", "text": "我的电话是+86 138 1234 5678，你们怎么还不处理"},
        {"role": "agent", "text": "您说的是+86 138 1234 5678对吗，我帮您记录"}]},
    {"dialogue_id": "continued", "agent_id": "A2", "team": "t1", "turns": [
        {"role": "customer", "text": "我的手机号是138 1234"},
        {"role": "agent", "text": "嗯，您说"},
        {"role": "customer", "text": "5678，麻烦尽快处理"}]},
    {"dialogue_id": "ids", "agent_id": "A3", "team": "t2", "turns": [
        {"role": "agent", "text": f"您好，您的身份证号{ID_CARD}已经核实，银行卡号{BANK}"},
        {"role": "customer", "text": "好的，你们保证一定能退款吗"}]},
    {"dialogue_id": "badrole", "turns": [{"role": PHONE, "text": "你好"}]},   # the error detail quotes it
]


def leaks(text: str) -> list[str]:
    """Unmasked numbers in ``text``: anything the detector finds, or any of the raw numbers with the
    separators people put between digit groups taken out."""
    squeezed = re.sub(r"[\s\-+,，、]", "", text)
    return [h.digits for h in find_pii(text)] + [n for n in RAW if n in squeezed]


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


@pytest.fixture(scope="module")
def pii_run(tmp_path_factory):
    from qc_pipeline.runner import run_batch

    root = tmp_path_factory.mktemp("pii")
    chats = root / "chats.jsonl"
    chats.write_text("\n".join(json.dumps(s, ensure_ascii=False) for s in SESSIONS) + "\n", "utf-8")
    stats = run_batch([str(chats)], str(root / "out"), load_config(overrides=("run.progress=false",)), workers=1)
    assert (stats.ok, dict(stats.failed)) == (5, {"bad_chat_session": 1})
    return root / "out"


def test_every_table_is_masked(pii_run):
    files = sorted(pii_run.rglob("*.parquet"))
    assert {f.relative_to(pii_run).parts[0] for f in files} == {"sessions", "utterances", "scores", "item_results", "summaries"}
    found = {}
    for f in files:
        for row in pq.read_table(f).to_pylist():
            for text in strings(row):
                if leaks(text):
                    found.setdefault(f.relative_to(pii_run).parts[0], []).append(text)
    assert found == {}
    # a number read out over two turns is masked across them (per call, turns joined)
    for f in pii_run.glob("utterances/*/*.parquet"):
        by_call: dict[str, list] = {}
        for row in pq.read_table(f).to_pylist():
            by_call.setdefault(row["call_id"], []).append(row["text"])
        assert {cid: leaks("".join(t)) for cid, t in by_call.items() if leaks("".join(t))} == {}
    # and the evidence really quotes the turns (masked), so the scan above looked at something
    evidence = [e["text"] for f in pii_run.glob("item_results/*/*.parquet")
                for r in pq.read_table(f).to_pylist() for e in r["evidence"] or ()]
    assert any("138****5678" in t for t in evidence) and any("139****4321" in t for t in evidence)


@pytest.mark.parametrize("fmt", ["csv", "html", "xlsx"])
def test_every_export_format_is_masked(pii_run, tmp_path, fmt):
    from qc_pipeline.cli import main

    out = tmp_path / fmt
    assert main(["export", "--results", str(pii_run), "--below", "101", "--format", fmt, "--out", str(out)]) == 0
    files = [f for f in out.rglob("*") if f.is_file()]
    assert files, "the export wrote nothing"
    texts = []
    for f in files:
        if f.suffix == ".xlsx":
            from openpyxl import load_workbook

            wb = load_workbook(f)
            texts += [str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None]
        else:
            texts.append(f.read_text("utf-8"))
    assert any("138****5678" in t for t in texts), "the export quotes no masked number: nothing was scanned"
    assert [t for t in texts if leaks(t)] == []


@pytest.mark.parametrize("name", ["report.html", "report.json"])
def test_reports_are_masked(pii_run, tmp_path, name):
    from qc_pipeline.cli import main

    assert main(["report", "--results", str(pii_run), "--out", str(tmp_path / name), "--level", "all"]) == 0
    assert leaks((tmp_path / name).read_text("utf-8")) == []


def test_scoring_still_sees_the_unmasked_numbers(pii_run):
    from qc_pipeline.sinks import read_table

    rows = {r["call_id"]: r for r in read_table(pii_run, "scores").to_pylist()}
    assert "veto" in rows["ids"]["flags"]      # the agent read out an ID card: found before masking
