"""Which speaker is the agent?  Decided from what each speaker says, with a confidence.

Agents greet, introduce themselves, offer help, ask the customer to wait or verify, apologise
and close; customers state problems about *their* account and complain about *your* company.
Each speaker gets ``agent cues - customer cues`` per utterance (homophone-tolerant), plus a small
prior for speaking first (inbound calls open with the agent).  Confidence is the logistic of the
score gap between the two speakers; below ``min_confidence`` the call is flagged
``low_role_confidence`` for review instead of being guessed silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from qc_pipeline.records import Utterance
from qc_pipeline.scoring.textmatch import find, normalize

AGENT_CUES = (
    "您好", "请问", "有什么可以帮您", "可以帮您", "为您服务", "很高兴为您", "工号", "客服", "欢迎致电", "欢迎来电",
    "帮您", "为您", "给您", "请您", "您的", "稍等", "请稍等", "核实", "查询一下", "查一下", "抱歉", "不好意思",
    "给您带来", "感谢您", "感谢", "还有其他", "祝您", "生活愉快", "再见", "您看", "这边", "请提供", "您提供",
    "已经为您", "已为您", "处理", "申请", "工作日", "亲",
)
CUSTOMER_CUES = (
    "我想", "我要", "我的", "我这", "我是", "我从来", "我刚", "我上", "你们", "你们的", "怎么回事", "为什么", "多扣",
    "投诉", "退给我", "给我", "帮我", "我查", "能不能", "可不可以", "到底", "什么时候", "还没", "没收到", "好吧", "谢谢",
    "麻烦你", "行吧",
)
FIRST_SPEAKER_PRIOR = 0.5


@dataclass(frozen=True)
class RoleDecision:
    agent_speaker: str
    confidence: float          # 0.5 = coin flip, 1.0 = certain
    scores: tuple[tuple[str, float], ...]


_AGENT_NORM = tuple(normalize(c) for c in AGENT_CUES)
_CUSTOMER_NORM = tuple(normalize(c) for c in CUSTOMER_CUES)


def _cue_count(norm_text: str, norm_cues: Sequence[str]) -> int:
    return sum(1 for c in norm_cues if find(c, norm_text, "pinyin") >= 0)


def speaker_scores(utterances: Sequence[Utterance]) -> dict[str, float]:
    scores: dict[str, float] = {}
    counts: dict[str, int] = {}
    for u in utterances:
        norm = normalize(u.text)
        s = _cue_count(norm, _AGENT_NORM) - _cue_count(norm, _CUSTOMER_NORM)
        scores[u.speaker] = scores.get(u.speaker, 0.0) + s
        counts[u.speaker] = counts.get(u.speaker, 0) + 1
    # average per utterance, damped for speakers with very few utterances
    out = {spk: scores[spk] / math.sqrt(counts[spk]) for spk in scores}
    if utterances:
        first = min(utterances, key=lambda u: (u.start if u.start is not None else u.turn_index))
        out[first.speaker] = out.get(first.speaker, 0.0) + FIRST_SPEAKER_PRIOR
    return out


def decide_agent(utterances: Sequence[Utterance]) -> RoleDecision | None:
    """The speaker most likely to be the agent; None when there is no speech."""
    scores = speaker_scores(utterances)
    if not scores:
        return None
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if len(ranked) == 1:
        return RoleDecision(ranked[0][0], 0.5, tuple(ranked))
    gap = ranked[0][1] - ranked[1][1]
    return RoleDecision(ranked[0][0], round(1 / (1 + math.exp(-gap)), 3), tuple(ranked))
