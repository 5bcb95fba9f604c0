"""``call``: the call's metadata, not its words — true or false for the whole session.

    call: {channel: chat|audio}            typed chat or transcribed audio
    call: {caller_verified: true|false}    identity already verified upstream (IVR, logged-in chat);
                                           unknown when neither the call nor the card's
                                           ``settings.caller_verified`` says (then it matches neither)
    over_duration_target: {}               longer than the operations manual's handling-time target for
                                           its call type (summary.duration_targets_min; needs the
                                           summarize stage's result, ``SessionContext.summary``)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.records import KIND_AUDIO, KIND_CHAT
from qc_pipeline.scoring.operators.base import Node, Outcome


@dataclass(frozen=True)
class Call(Node):
    op = "call"
    channel: Optional[str] = None
    caller_verified: Optional[bool] = None
    assume_verified: Optional[bool] = None   # the card's setting, for calls whose metadata does not say

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("channel", "caller_verified"))
        if not body:
            raise c.err(key, "needs channel and/or caller_verified")
        if scope != type(scope)():
            raise c.err(key, "call metadata has no turns: scope keys do not apply")
        channel = c.choice(body["channel"], f"{key}.channel", (KIND_CHAT, KIND_AUDIO)) if "channel" in body else None
        verified = c.boolean(body["caller_verified"], f"{key}.caller_verified") if "caller_verified" in body else None
        return cls(rule_id=rule_id, channel=channel, caller_verified=verified,
                   assume_verified=c.settings.caller_verified)

    def rescope(self, scope):
        return self

    def _evaluate(self, ctx):
        ok = self.channel is None or ctx.channel == self.channel
        if self.caller_verified is not None:
            known = ctx.caller_verified if ctx.caller_verified is not None else self.assume_verified
            ok = ok and known is not None and known == self.caller_verified
        return Outcome(ok)


@dataclass(frozen=True)
class OverDurationTarget(Node):
    op = "over_duration_target"

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        if body not in (None, {}, True):
            raise c.err(key, "takes no options: over_duration_target: {}")
        if scope != type(scope)():
            raise c.err(key, "the call's duration has no turns: scope keys do not apply")
        return cls(rule_id=rule_id)

    def rescope(self, scope):
        return self

    def _evaluate(self, ctx):
        summary = ctx.summary
        return Outcome(bool(summary is not None and summary.over_duration_target))
