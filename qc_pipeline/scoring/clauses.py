"""Clauses of a turn and what kind of speech act each is: a question (and which kind) or a statement.

Chinese questions are marked by final particles and question words, not only by "？": typed chat
often has no punctuation at all, and ASR punctuation is unreliable.  呢 ends questions *and*
statements ("我们周末也营业的呢" informs), so it makes a question only together with a question
word, an A-not-A form or 还是.

Question kinds
  confirm_tag   …是吗 / 对吗 / 是吧 / 对吧 / 是不是 / 对不对   (checks that something is so)
  permission    …好吗 / 可以吗 / 行吗 / 好不好 / 可不可以      (asks leave to act)
  alternative   是A还是B                                    (offers options)
  wh            什么 / 怎么 / 哪 / 多少 / 为什么 … + ？ or 呢 or 请问
  yes_no        …吗 / 么 / 嘛, A-not-A (有没有 / 能不能 …), or "？"
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.textmatch import PLACEHOLDER

QUESTION_KINDS = ("confirm_tag", "permission", "alternative", "wh", "yes_no")

_SPLIT = re.compile(r"((?:[，,。！!？?；;…~～\n\s]|(?<!\d)\.(?!\d))+)")
_SOFT_TAIL = re.compile(r"(?:[哦呀啊呐哈啦噢喔诶哟呦哒滴捏嗯]|亲亲|亲爱的|亲|[^\w\u4e00-\u9fff])+$")
_SOFT_HEAD = re.compile(r"^(?:亲亲|亲爱的|亲|嗯嗯|嗯|哦|啊|呃|好的|那|那么|请问)+")
_CONFIRM_TAGS = ("是吗", "对吗", "是么", "对么", "是嘛", "对嘛", "是吧", "对吧", "是不是", "对不对", "是这样吗",
                 "没错吧", "是的吧", "对不")
_PERMISSION_TAGS = ("好吗", "可以吗", "行吗", "好么", "可以么", "好不好", "可不可以", "行不行", "可以不", "好嘛")
_FRAGMENT = 4   # characters: a message this short without final punctuation continues in the next one
_TAG_ONLY = re.compile(r"^(?:" + "|".join(_CONFIRM_TAGS + _PERMISSION_TAGS) + r")$")
_A_NOT_A = re.compile(r"(.)[不没]\1|有没有|^(?:您|你)?是否")
_INDIRECT = re.compile(r"(?:看看|看下|看一下|查看|查查|查一下|查下|确认|核实|问问|问一下|知道|清楚|了解|决定|判断)[^，。]{0,6}"
                       r"(?:.[不没].|有没有|是否)")
_WH = re.compile(r"什么|怎么|哪|谁|几(?!乎)|多少|多久|多长|为什么|为何|如何|咋|啥")
_WH_END = re.compile(r"(?:什么|多少|哪里|哪儿|哪个|几点|几号|多久|怎么办|为什么|咋办|啥)$")
_INDIRECT_WH = re.compile(r"不知道|不清楚|不明白|看看|问问")
_ALTERNATIVE = re.compile(r"(?:是|要|想|需要|选择)[^，。,.!?！？]{0,16}还是")
_NOT_PARTICLE = ("什么", "怎么", "这么", "那么", "多么", "要么")   # 么 inside a word, not the question particle
_PARTICLES = re.compile(r"[呢哦呀啊啦吧哈嘛的了嗯呐噢喔哟呦哒滴亲~～\W_]", re.UNICODE)


@dataclass(frozen=True)
class Clause:
    start: int          # offset in the turn's text
    text: str           # the clause with its trailing punctuation
    body: str           # without trailing punctuation and soft particles (亲, 哦, emoticons …)

    @functools.cached_property
    def core(self) -> str:
        """The body without leading address terms and fillers (亲爱的, 请问, 那 …); computed once per clause."""
        return _SOFT_HEAD.sub("", self.body)

    @functools.cached_property
    def question_kind(self) -> Optional[str]:
        """Computed once per clause (clauses are cached per turn; every question/statement rule asks)."""
        return question_kind(self.text)


def split_clauses(text: str) -> list[Clause]:
    """Clauses of ``text`` (a turn: messages joined by newlines).  A bare tag ("对吗", "可以吗") joins
    the clause before it; a short fragment that ends a message without punctuation ("您是想" sent on
    its own, then "取消这个订单吗") joins the clause after it."""
    out: list[Clause] = []
    parts = _SPLIT.split(text)
    pos = 0
    carry = None   # a message-final fragment waiting for its continuation
    for k in range(0, len(parts), 2):
        body_raw = parts[k]
        tail = parts[k + 1] if k + 1 < len(parts) else ""
        end = pos + len(body_raw) + len(tail)
        if body_raw:
            body = strip_soft(body_raw)
            if carry is not None:
                out.append(Clause(carry.start, text[carry.start:end], carry.body + body))
                carry = None
            elif out and _TAG_ONLY.match(body):
                prev = out.pop()
                out.append(Clause(prev.start, text[prev.start:end], prev.body + body))
            else:
                out.append(Clause(pos, body_raw + tail, body))
            if tail.strip(" \t") == "\n" and len(body) <= _FRAGMENT and k + 2 < len(parts):
                carry = out.pop()
        pos = end
    if carry is not None:
        out.append(carry)
    return out


def strip_soft(clause: str) -> str:
    """A clause without trailing particles, address terms and emoticons."""
    return _SOFT_TAIL.sub("", clause.strip())


def question_kind(clause: str) -> Optional[str]:
    """Which kind of question ``clause`` (one clause, punctuation kept) is, or None for a statement."""
    marked = "?" in clause or "？" in clause
    body = strip_soft(clause)
    head = _SOFT_HEAD.sub("", body)
    asks = clause.lstrip().startswith("请问") or body.startswith("请问")
    if not body:
        return "yes_no" if marked else None
    if body.endswith(_CONFIRM_TAGS):
        return "confirm_tag"
    if body.endswith(_PERMISSION_TAGS):
        return "permission"
    wh = bool(_WH.search(head))
    if _ALTERNATIVE.search(head) and (marked or asks or body[-1] in "吗么呢嘛" or head.startswith(("是", "您是", "你是"))):
        return "alternative"
    if body[-1] in "吗么嘛麽" and not body.endswith(_NOT_PARTICLE):
        return "yes_no"
    if wh and (marked or asks or body.endswith("呢") or head.startswith(("您", "你"))
               or (_WH_END.search(head) and not _INDIRECT_WH.search(head))):
        return "wh"
    if _A_NOT_A.search(head) and not _INDIRECT.search(head):
        return "yes_no"
    if marked or asks:
        return "yes_no"
    return None


def substance(clause: str, ignore: Optional[re.Pattern] = None) -> int:
    """Content characters of a clause: without anonymisation tags, the ``ignore`` phrases
    (boilerplate), particles and punctuation."""
    text = PLACEHOLDER.sub("", clause)
    if ignore is not None:
        text = ignore.sub("", text)
    return len(_PARTICLES.sub("", text))
