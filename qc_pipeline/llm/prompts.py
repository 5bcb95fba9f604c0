"""Prompts (Chinese, written for 7B+ instruction models such as Qwen2.5-7B-Instruct) and transcript chunking.

A transcript is shown as numbered lines ``[turn_index] 坐席：text``; the model cites those numbers and quotes
one of those lines verbatim, which the judge then checks.  Long transcripts are split into chunks of whole
turns (a single over-long turn into numbered pieces of the same index) — never cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, Utterance

ROLE_NAMES = {ROLE_AGENT: "坐席", ROLE_CUSTOMER: "客户"}
ANSWERS = ("yes", "no", "not_applicable")
MAX_QUOTE_CHARS = 40

JUDGE_SYSTEM = (
    "你是呼叫中心的资深质检员。你会看到一条质检标准和一段通话记录（每行开头方括号里是轮次编号）。"
    "只根据记录中实际出现的内容判断该标准是否满足，不要猜测记录以外的内容。"
    "只输出一个JSON对象，不要输出任何其他文字。"
)

JUDGE_FORMAT = (
    '输出格式：{"answer": "yes" 或 "no" 或 "not_applicable", "turns": [作为依据的轮次编号], '
    f'"quote": "从这些轮次中原样复制的一小段原文（不超过{MAX_QUOTE_CHARS}字，不要改写）", "reason": "一句话理由"}}\n'
    "yes = 满足该标准；no = 不满足；not_applicable = 这通电话不涉及该标准。"
    "回答 yes 时必须给出轮次编号和原文摘录；quote 必须是这些轮次里坐席或客户说过的原话，不能抄写质检标准，也不能改写。"
)

SUMMARY_SYSTEM = (
    "你是呼叫中心的通话分析员。阅读通话记录（每行开头方括号里是轮次编号），"
    "只根据记录内容填写通话小结。只输出一个JSON对象，不要输出任何其他文字。"
)


@dataclass(frozen=True)
class Chunk:
    lines: tuple[str, ...]
    turns: tuple[int, ...]       # turn indices shown in this chunk
    part: int                    # 1-based
    of: int


def turn_line(u: Utterance) -> str:
    return f"[{u.turn_index}] {ROLE_NAMES.get(u.role, '未知')}：{u.text}"


def chunk_transcript(utterances: Sequence[Utterance], max_chars: int, overlap: int = 1) -> list[Chunk]:
    """Whole turns per chunk, at most ``max_chars`` characters of transcript each; neighbouring chunks share
    ``overlap`` turns of context.  A turn longer than a chunk is split into pieces ``[i] 坐席（续）：…``."""
    pieces: list[tuple[int, str]] = []
    for u in utterances:
        line = turn_line(u)
        if len(line) <= max_chars:
            pieces.append((u.turn_index, line))
            continue
        head = f"[{u.turn_index}] {ROLE_NAMES.get(u.role, '未知')}（续）："
        room = max(1, max_chars - len(head))
        for k in range(0, len(u.text), room):
            pieces.append((u.turn_index, head + u.text[k:k + room]))
    groups: list[list[tuple[int, str]]] = []
    cur: list[tuple[int, str]] = []
    size = 0
    for p in pieces:
        if cur and size + len(p[1]) + 1 > max_chars:
            groups.append(cur)
            keep = cur[-overlap:] if overlap > 0 else []
            if sum(len(q[1]) + 1 for q in keep) + len(p[1]) + 1 > max_chars:
                keep = []
            cur, size = list(keep), sum(len(q[1]) + 1 for q in keep)
        cur.append(p)
        size += len(p[1]) + 1
    if cur:
        groups.append(cur)
    return [Chunk(lines=tuple(t for _, t in g), turns=tuple(dict.fromkeys(i for i, _ in g)), part=n + 1,
                  of=len(groups)) for n, g in enumerate(groups)]


def _chunk_header(chunk: Chunk) -> str:
    if chunk.of == 1:
        return "通话记录："
    return f"通话记录（较长，分{chunk.of}段发送，这是第{chunk.part}段；只依据这一段判断）："


@dataclass(frozen=True)
class FewShot:
    dialogue: str                # e.g. "[0] 客户：…\n[1] 坐席：…"
    answer: str                  # yes | no | not_applicable
    turns: tuple[int, ...] = ()
    quote: str = ""
    reason: str = ""


def judge_messages(criterion: str, chunk: Chunk, few_shot: Sequence[FewShot] = (),
                   scope_turns: Optional[Sequence[int]] = None) -> list[dict]:
    """System + (example user/assistant pairs) + the question about this chunk."""
    msgs = [{"role": "system", "content": JUDGE_SYSTEM}]
    for ex in few_shot:
        msgs.append({"role": "user", "content": f"质检标准：{criterion}\n通话记录：\n{ex.dialogue}\n\n{JUDGE_FORMAT}"})
        msgs.append({"role": "assistant", "content": json.dumps(
            {"answer": ex.answer, "turns": list(ex.turns), "quote": ex.quote, "reason": ex.reason},
            ensure_ascii=False)})
    scope = ""
    if scope_turns is not None:
        scope = "只能引用这些轮次作为依据：" + "、".join(str(t) for t in scope_turns) + "\n"
    msgs.append({"role": "user", "content": f"质检标准：{criterion}\n{_chunk_header(chunk)}\n" + "\n".join(chunk.lines)
                 + f"\n\n{scope}{JUDGE_FORMAT}"})
    return msgs


def summary_messages(chunk: Chunk, call_types: Sequence[str], reasons: Sequence[str]) -> list[dict]:
    fmt = ('{"problem": "客户的问题（一句话）", "action": "坐席做了什么（一句话）", "outcome": "结果（一句话）", '
           f'"call_type": "{"/".join(call_types)} 之一", "reason": "来电原因类别，从 {"、".join(reasons)} 中选一个", '
           '"reason_text": "具体来电原因（一句话）", "resolved": true 或 false}')
    body = (f"{_chunk_header(chunk)}\n" + "\n".join(chunk.lines) + "\n\n"
            f"通话类型只能是：{'、'.join(call_types)}。resolved 表示通话结束时客户的问题是否已经解决或得到明确的处理方案。\n"
            f"输出格式：{fmt}")
    return [{"role": "system", "content": SUMMARY_SYSTEM}, {"role": "user", "content": body}]
