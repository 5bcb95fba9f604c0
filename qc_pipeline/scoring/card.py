"""Scorecards (质检评分表) as validated YAML.

    id: default
    version: "2026.11-1"
    name: 默认质检评分表
    pass_score: 60
    grades: {A: 90, B: 75, C: 60, D: 0}
    settings:                            # optional, card-wide matching settings
      lexicon: [工单, 套餐]               # extra words for word-boundary keyword matching
      homophone_clash_min_freq: 500      # pinyin fuzz is off for keywords with a homophone this common
      negation: {cues: [不, 没, 无法], max_gap: 8}   # for keyword ``skip_negated``
      caller_verified: false             # assumed when a call's metadata does not say (null: unknown)
    phrases:                             # optional: named phrase/regex lists, reused with YAML anchors
      boilerplate: &boilerplate ["您好|你好", "请稍等"]
    rules: {rule_id: RULE, ...}          # reusable named rules (see qc_pipeline.scoring.operators)
    items:
      - id: greeting
        name: 问候语
        weight: 10
        role: agent                      # whose behaviour the item judges
        mode: binary | graded | deduction
        pass: RULE                       # binary: full weight when it matches
        levels: [{points: 10, when: RULE}, ...]   # graded: first matching level wins
        violation: RULE                  # deduction: each violating turn costs per_violation
        per_violation: 5
        floor: 0
        veto: RULE                       # optional 一票否决: session total becomes 0
        not_applicable: RULE             # optional: item left out, total renormalised
        flag: compliance_hit             # optional session flag raised when the item loses points

Weights must add up to 100.  Every error names the offending key path.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import yaml

from qc_pipeline.errors import ConfigError
from qc_pipeline.scoring.operators import Compiler, Node, Settings, walk
from qc_pipeline.scoring.operators.compiler import check_number
from qc_pipeline.scoring.words import save_clashes

MODES = ("binary", "graded", "deduction")
_ITEM_KEYS = ("id", "name", "weight", "role", "mode", "pass", "levels", "violation", "per_violation", "floor",
              "veto", "not_applicable", "flag", "description")
_CARD_KEYS = ("id", "version", "name", "pass_score", "grades", "settings", "phrases", "rules", "items", "description")
_SETTING_KEYS = ("lexicon", "homophone_clash_min_freq", "negation", "caller_verified")


@dataclass(frozen=True)
class Level:
    points: float
    when: Node


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    weight: float
    role: str
    mode: str
    passing: Optional[Node] = None
    levels: tuple[Level, ...] = ()
    violation: Optional[Node] = None
    per_violation: float = 0.0
    floor: float = 0.0
    veto: Optional[Node] = None
    not_applicable: Optional[Node] = None
    flag: Optional[str] = None

    def roots(self) -> tuple[Node, ...]:
        nodes = (self.passing, self.violation, self.veto, self.not_applicable) + tuple(lv.when for lv in self.levels)
        return tuple(n for n in nodes if n is not None)


@dataclass(frozen=True)
class Scorecard:
    id: str
    version: str
    name: str
    pass_score: float
    grades: tuple[tuple[str, float], ...]   # sorted high → low
    items: tuple[Item, ...]
    rules: tuple[tuple[str, Node], ...] = ()  # the compiled named rules, for evaluation and review tools
    settings: Settings = Settings()

    def nodes(self) -> Iterator[Node]:
        """Every rule node the items use (through operands and scope keys)."""
        return walk(n for item in self.items for n in item.roots())

    def rule(self, rule_id: str) -> Node:
        for name, node in self.rules:
            if name == rule_id:
                return node
        raise KeyError(f"scorecard {self.id!r} has no rule {rule_id!r}")

    def grade(self, total: float) -> str:
        for name, low in self.grades:
            if total >= low:
                return name
        return self.grades[-1][0]


def _str(value, key, source) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value).strip() == "":
        raise ConfigError(key, f"expected a non-empty string, got {value!r}", source)
    return str(value)


def parse_scorecard(data: dict, source: Optional[str] = None) -> Scorecard:
    if not isinstance(data, dict):
        raise ConfigError("<root>", "a scorecard must be a mapping", source)
    for k in data:
        if k not in _CARD_KEYS:
            raise ConfigError(str(k), f"unknown key (allowed: {', '.join(_CARD_KEYS)})", source)
    for k in ("id", "version", "items"):
        if k not in data:
            raise ConfigError(k, "is required", source)
    rules = data.get("rules") or {}
    if not isinstance(rules, dict):
        raise ConfigError("rules", "expected a mapping of rule id → rule", source)
    settings = _settings(data.get("settings") or {}, source)
    phrases = data.get("phrases") or {}
    if not isinstance(phrases, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in phrases.values()):
        raise ConfigError("phrases", "expected a mapping of name → list of phrases", source)
    compiler = Compiler(rules, settings, source)
    for rule_id in rules:  # compile all named rules so errors surface even when unused
        compiler.named(rule_id, f"rules.{rule_id}")

    grades_raw = data.get("grades", {"A": 90, "B": 75, "C": 60, "D": 0})
    if not isinstance(grades_raw, dict) or not grades_raw:
        raise ConfigError("grades", "expected a mapping grade → minimum total", source)
    grades = tuple(sorted(((str(g), check_number(v, f"grades.{g}", 0, 100, source)) for g, v in grades_raw.items()),
                          key=lambda x: -x[1]))

    items_raw = data["items"]
    if not isinstance(items_raw, list) or not items_raw:
        raise ConfigError("items", "expected a non-empty list", source)
    items, seen = [], set()
    for n, raw in enumerate(items_raw):
        key = f"items[{n}]"
        if not isinstance(raw, dict):
            raise ConfigError(key, "expected a mapping", source)
        for k in raw:
            if k not in _ITEM_KEYS:
                raise ConfigError(f"{key}.{k}", f"unknown key (allowed: {', '.join(_ITEM_KEYS)})", source)
        item_id = _str(raw.get("id"), f"{key}.id", source)
        if item_id in seen:
            raise ConfigError(f"{key}.id", f"duplicate item id {item_id!r}", source)
        seen.add(item_id)
        rid = f"item:{item_id}"
        weight = check_number(raw.get("weight"), f"{key}.weight", 0, 100, source)
        mode = compiler.choice(raw.get("mode", "binary"), f"{key}.mode", MODES)
        role = compiler.role(raw.get("role", "agent"), f"{key}.role")
        kwargs = {}
        if mode == "binary":
            if "pass" not in raw:
                raise ConfigError(f"{key}.pass", "is required for mode binary", source)
            kwargs["passing"] = compiler.compile(raw["pass"], f"{key}.pass", rid)
        elif mode == "graded":
            levels_raw = raw.get("levels")
            if not isinstance(levels_raw, list) or not levels_raw:
                raise ConfigError(f"{key}.levels", "graded items need a non-empty list of {points, when}", source)
            levels = []
            for j, lv in enumerate(levels_raw):
                lk = f"{key}.levels[{j}]"
                if not isinstance(lv, dict) or set(lv) != {"points", "when"}:
                    raise ConfigError(lk, "expected exactly the keys points and when", source)
                levels.append(Level(check_number(lv["points"], f"{lk}.points", 0, weight, source),
                                    compiler.compile(lv["when"], f"{lk}.when", f"{rid}/L{j}")))
            kwargs["levels"] = tuple(levels)
        else:
            if "violation" not in raw:
                raise ConfigError(f"{key}.violation", "is required for mode deduction", source)
            kwargs["violation"] = compiler.compile(raw["violation"], f"{key}.violation", rid)
            kwargs["per_violation"] = check_number(raw.get("per_violation", weight), f"{key}.per_violation", 0, 100, source)
            kwargs["floor"] = check_number(raw.get("floor", 0), f"{key}.floor", 0, weight, source)
        if "veto" in raw:
            kwargs["veto"] = compiler.compile(raw["veto"], f"{key}.veto", f"{rid}/veto")
        if "not_applicable" in raw:
            kwargs["not_applicable"] = compiler.compile(raw["not_applicable"], f"{key}.not_applicable", f"{rid}/na")
        flag = raw.get("flag")
        if flag is not None:
            kwargs["flag"] = _str(flag, f"{key}.flag", source)
        items.append(Item(id=item_id, name=_str(raw.get("name", item_id), f"{key}.name", source), weight=weight,
                          role=role, mode=mode, **kwargs))
    total = sum(i.weight for i in items)
    if abs(total - 100) > 1e-6:
        raise ConfigError("items", f"weights add up to {total:g}, expected 100", source)
    return Scorecard(id=_str(data["id"], "id", source), version=_str(data["version"], "version", source),
                     name=str(data.get("name", data["id"])),
                     pass_score=check_number(data.get("pass_score", 60), "pass_score", 0, 100, source),
                     grades=grades, items=tuple(items), rules=tuple(compiler.compiled.items()), settings=settings)


def _settings(raw, source) -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError("settings", f"expected a mapping with keys {', '.join(_SETTING_KEYS)}", source)
    for k in raw:
        if k not in _SETTING_KEYS:
            raise ConfigError(f"settings.{k}", f"unknown key (allowed: {', '.join(_SETTING_KEYS)})", source)
    lexicon = raw.get("lexicon", [])
    if not isinstance(lexicon, list) or not all(isinstance(w, str) and w.strip() for w in lexicon):
        raise ConfigError("settings.lexicon", "expected a list of words", source)
    negation = raw.get("negation") or {}
    if not isinstance(negation, dict) or set(negation) - {"cues", "max_gap"}:
        raise ConfigError("settings.negation", "expected a mapping with keys cues, max_gap", source)
    default = Settings()
    cues = negation.get("cues", list(default.negation_cues))
    if not isinstance(cues, list) or not cues or not all(isinstance(w, str) and w.strip() for w in cues):
        raise ConfigError("settings.negation.cues", "expected a non-empty list of words", source)
    verified = raw.get("caller_verified")
    if verified is not None and not isinstance(verified, bool):
        raise ConfigError("settings.caller_verified", f"expected true, false or null, got {verified!r}", source)
    from qc_pipeline.scoring.textmatch import normalize

    return Settings(lexicon=tuple(normalize(w) for w in lexicon),
                    homophone_clash_min_freq=int(check_number(
                        raw.get("homophone_clash_min_freq", default.homophone_clash_min_freq),
                        "settings.homophone_clash_min_freq", 1, 1e9, source)),
                    negation_cues=tuple(normalize(w) for w in cues),
                    negation_max_gap=int(check_number(negation.get("max_gap", default.negation_max_gap),
                                              "settings.negation.max_gap", 0, 100, source)),
                    caller_verified=verified)


PACKAGE = Path(str(importlib.resources.files("qc_pipeline")))


def find_file(spec: str, folders: Sequence[Path]) -> Optional[Path]:
    """``spec`` if it is an absolute path to a file, else the first ``folder / spec`` that is a file."""
    p = Path(spec).expanduser()
    for candidate in [p] if p.is_absolute() else [folder / p for folder in folders]:
        if candidate.is_file():
            return candidate
    return None


def resolve_scorecard_path(spec: str, key: str = "scoring.scorecard") -> Path:
    """A scorecard path as configured: absolute, else relative to the current folder, else to the
    installed package (where ``configs/scorecards/default.yaml`` ships)."""
    found = find_file(spec, [Path.cwd(), PACKAGE])
    if found is None:
        raise ConfigError(key, f"scorecard file {spec!r} not found (looked in {Path.cwd()} and {PACKAGE})")
    return found


def load_scorecard(path: str | Path) -> Scorecard:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read scorecard: {exc}", str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"invalid YAML: {exc}", str(path)) from None
    card = parse_scorecard(data, str(path))
    save_clashes()  # what the parse looked up, for the next worker's start-up
    return card
