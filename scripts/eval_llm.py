"""LLM items vs rules only, evidence precision, throughput and gating cost.

    python scripts/eval_llm.py [--labels FILE] [--limit N] [--base-url URL --model NAME] [--cache-dir DIR]

Without --base-url it starts llama.cpp's server (``llmtest`` extra) on 127.0.0.1 with the small test model
(Qwen2.5-Coder-0.5B-Instruct Q4_K_M): a PLUMBING FIXTURE, not a judge — expect its F1 to say little about what a
7B+ model does.  With --base-url it measures any OpenAI-compatible server (vLLM, Ollama, a hosted Qwen).

On the hand-labelled dev sessions (eval/item_labels; labels_v2 fields need_confirmation, customer_upset +
soothed_first, customer_reaction), for three items, on the same sessions:
  rules   the default card's rules (need_confirmation's pass rule; soothing before solution_or_transfer;
          customer_accepts and not customer_rejects_or_gives_up)
  llm     the LLM asked on every session (a failed/rejected answer falls back to the rule)
  gated   rules where they are sure, the LLM only where they are unsure (the card pattern in README):
          need confirmation when the agent asked back after the request but the rule did not credit it,
          soothing when the agent soothed but not first, acceptance when the customer showed no stance
prints F1 and Cohen's kappa; evidence precision (answers whose quote is found verbatim in the cited turns);
seconds, tokens per request and sessions/hour on this box; requests per session gated vs every item; and a
projection for a night of 10,000 calls on a GPU server with a 7B model from published vLLM numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qc_pipeline.config import LlmConfig, ScoringConfig  # noqa: E402
from qc_pipeline.inputs import chat_to_source  # noqa: E402
from qc_pipeline.llm.client import LlmClient  # noqa: E402
from qc_pipeline.llm.judge import judge  # noqa: E402
from qc_pipeline.metrics import cohen_kappa, precision_recall_f1  # noqa: E402
from qc_pipeline.pipeline import Pipeline  # noqa: E402
from qc_pipeline.scoring.card import resolve_scorecard_path  # noqa: E402
from qc_pipeline.scoring.context import SessionContext  # noqa: E402
from qc_pipeline.scoring.operators import Compiler  # noqa: E402
from qc_pipeline.stages.chat import ChatStage  # noqa: E402
from qc_pipeline.stages.score import ScoreStage  # noqa: E402

CRITERIA = {
    "need_confirmation": ("坐席是否复述或确认了客户的需求，例如“您是想……对吗”“您是要退货还是换货呢”“退款是吗”？"
                          "只询问订单号、手机号等信息，只说“请问有什么可以帮您”，或直接办理、直接回答，都不算。", "agent"),
    "soothed_first": ("客户表现出不满或着急之后，坐席是否在给出解决方案或下一步处理之前（或在同一段回复里）先安抚了客户，"
                      "例如道歉、表示理解、请客户别着急或放心？先给方案后道歉、或从不安抚，都不算。", "agent"),
    "accepted": ("坐席给出解决方案或答复之后、结束语之前，客户是否接受了该方案，例如“好的”“明白了”“可以”“谢谢”？"
                 "礼貌地放弃（如“那算了吧”）、继续抱怨、或对方案没有回应，都不算接受。", "customer"),
}

# Published vLLM throughput for 7-8B models on one GPU (sources in README / docs/llm.md).
PUBLISHED = [
    ("RTX 4090 24GB, Mistral-7B-Instruct, vLLM, 256 in/128 out, concurrency 32", 9.73, 128),
    ("A10G 24GB, Llama-2-7b-chat, vLLM 0.2.0 benchmark_throughput, 256 in/128 out", 3.8, 128),
]


def load_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def f1_kappa(pred: list[bool], gold: list[bool]) -> tuple[float, float]:
    return precision_recall_f1(pred, gold)[2], cohen_kappa(zip(pred, gold)) or 0.0


def start_server(threads: int) -> tuple[subprocess.Popen, str, str]:
    from qc_pipeline.llm.fixture import FIXTURE_NAME, fixture_model

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    log = open(Path(tempfile.gettempdir()) / "eval_llm_server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(fixture_model()), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads),
                             "--n_threads_batch", str(threads),
                             "--model_alias", FIXTURE_NAME], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/models", timeout=5).read()
            return proc, url, FIXTURE_NAME
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"llama.cpp server did not start (log: {log.name})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("QC_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--labels", default=str(REPO / "eval" / "item_labels" / "labels_v2.jsonl"))
    ap.add_argument("--scorecard", default="configs/scorecards/default.yaml",
                    help="scorecard YAML (default: the card shipped in the package)")
    ap.add_argument("--limit", type=int, default=0, help="need confirmation and acceptance on the first N labelled "
                    "sessions only (0 = all); soothing is always asked on every labelled upset session")
    ap.add_argument("--base-url", help="an OpenAI-compatible server; default: start the llama.cpp test server")
    ap.add_argument("--model", default="")
    ap.add_argument("--threads", type=int, default=1,
                    help="llama.cpp threads (1: on a shared box, OpenMP threads spinning on 2 cores cost 5-10x)")
    ap.add_argument("--cache-dir", default="", help="answer cache (default: none, so timings are real)")
    ap.add_argument("--max-tokens", type=int, default=160)
    args = ap.parse_args()

    load0 = os.getloadavg()
    proc = None
    if args.base_url:
        url, model = args.base_url, args.model
    else:
        proc, url, model = start_server(args.threads)
    try:
        run(args, url, model, load0)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


def run(args, url: str, model: str, load0) -> None:
    shared = Path(args.shared)
    dialogues = {d["dialogue_id"]: d for f in ("jddc_sample/dev.jsonl", "csds_jd/dev.jsonl", "mobilecs_sample/dev.jsonl",
                                               "stc3_helpdesk/dev.jsonl") if (shared / f).is_file()
                 for d in load_jsonl(shared / f)}
    labels = [lab for lab in load_jsonl(args.labels) if lab["dialogue_id"] in dialogues]
    first = {lab["dialogue_id"] for lab in labels[: args.limit or len(labels)]}
    labels = [lab for lab in labels if lab["dialogue_id"] in first or lab.get("customer_upset") == 1]
    card_path = resolve_scorecard_path(args.scorecard, "--scorecard")
    pipe = Pipeline([ChatStage(), ScoreStage(ScoringConfig(scorecard=str(card_path), mask_pii=False))])
    pipe.setup()
    card = pipe.stages[1].card
    compiler = Compiler(yaml.safe_load(card_path.read_text(encoding="utf-8"))["rules"], card.settings, str(card_path))
    soothe_first = compiler.compile({"ref": "soothing", "before": {"ref": "solution_or_transfer"}}, "eval",
                                    "soothe_first")
    # an echo / option question after the customer's request: where need confirmation is asked when gated (the
    # `where` of the card example in README)
    asks_back = compiler.compile({"question": {"kinds": ["confirm_tag", "alternative"]}, "role": "agent",
                                  "after": {"ref": "customer_request"}}, "eval", "asks_back")
    client = LlmClient(LlmConfig(base_url=url, model=model, timeout_s=600, max_retries=1, max_tokens=args.max_tokens,
                                 max_prompt_chars=6000, cache_dir=args.cache_dir, max_calls_per_session=50))
    rows = {k: [] for k in CRITERIA}          # (gold, rules, llm, gated, asked_when_gated)
    verdicts = []
    per_request = []
    t_all = time.perf_counter()
    for lab in labels:
        rec = pipe.run_one(chat_to_source(dialogues[lab["dialogue_id"]], lab["dialogue_id"]))
        if not rec.ok:
            continue
        items = {r.item_id: r for r in rec.score.items}
        ctx = SessionContext(rec.utterances)
        def rule(rid: str, ctx=ctx) -> bool:
            return card.rule(rid).evaluate(ctx).matched

        nc = items["need_confirmation"]
        soothing_any = rule("soothing")
        todo = {}  # item: (gold, rules verdict, rules sure?)
        if lab["dialogue_id"] in first:
            todo["need_confirmation"] = (bool(lab["need_confirmation"]), nc.hit,
                                         nc.hit or not asks_back.evaluate(ctx).matched)
        if lab.get("customer_upset") == 1 and lab.get("soothed_first") is not None:
            soothed = soothe_first.evaluate(ctx).matched
            todo["soothed_first"] = (bool(lab["soothed_first"]), soothed, soothed or not soothing_any)
        if lab["dialogue_id"] in first and lab.get("customer_reaction") is not None:
            accepts, rejects = rule("customer_accepts"), rule("customer_rejects_or_gives_up")
            todo["accepted"] = (lab["customer_reaction"] == "accepted", accepts and not rejects,
                                (accepts and not rejects) or rejects)
        for item, (gold, by_rules, sure) in todo.items():
            criterion, role = CRITERIA[item]
            scope = [u.turn_index for u in rec.utterances if u.role == role]
            before = (client.stats.requests, client.stats.seconds, client.stats.prompt_tokens,
                      client.stats.completion_tokens)
            v = judge(client, client.session(rec.call_id), criterion, rec.utterances, scope_turns=scope)
            if client.stats.requests > before[0]:
                per_request.append((client.stats.seconds - before[1], client.stats.prompt_tokens - before[2],
                                    client.stats.completion_tokens - before[3], client.stats.requests - before[0]))
            verdicts.append(v)
            by_llm = (v.answer == "yes") if v.ok else by_rules
            rows[item].append((gold, by_rules, by_llm, by_rules if sure else by_llm, not sure))
    wall = time.perf_counter() - t_all
    load1 = os.getloadavg()

    print(f"LLM: {model} at {url}  ({'test fixture: plumbing only' if 'coder-0.5b' in model else 'as given'})")
    print(f"labels: {args.labels} ({len(labels)} sessions)\n")
    print(f"{'item':20s} {'n':>4s} {'pos':>4s}   {'rules F1/κ':>12s}   {'LLM F1/κ':>12s}   {'gated F1/κ':>12s}   "
          f"asked when gated")
    report = {"model": model, "sessions": len(labels), "items": {}}
    for item, rs in rows.items():
        if not rs:
            print(f"{item:20s} no labelled sessions")
            continue
        gold = [r[0] for r in rs]
        res = {name: f1_kappa([r[i] for r in rs], gold) for i, name in ((1, "rules"), (2, "llm"), (3, "gated"))}
        asked = sum(r[4] for r in rs)
        print(f"{item:20s} {len(rs):4d} {sum(gold):4d}   " + "   ".join(
            f"{res[k][0]:5.2f}/{res[k][1]:+5.2f}" for k in ("rules", "llm", "gated")) + f"   {asked}/{len(rs)}")
        report["items"][item] = {"n": len(rs), "positives": sum(gold), "asked_when_gated": asked,
                                 **{f"{k}_f1": round(v[0], 3) for k, v in res.items()},
                                 **{f"{k}_kappa": round(v[1], 3) for k, v in res.items()}}

    errors: dict = {}
    for v in verdicts:
        if not v.ok:
            errors[v.error] = errors.get(v.error, 0) + 1
    checked = sum(v.quote_checked for v in verdicts)
    found = sum(v.quote_found for v in verdicts)
    answered = sum(v.ok for v in verdicts)
    print(f"\nLLM answers: {len(verdicts)} asked, {answered} accepted, rejected/failed: {errors or 'none'}")
    print(f"evidence precision: {found}/{checked} answers with a quote had it verbatim in the cited turns "
          f"({found / checked:.1%})" if checked else "evidence precision: no answer carried a quote")
    report["evidence_precision"] = round(found / checked, 3) if checked else None
    report["rejected"] = errors

    n_req = sum(r[3] for r in per_request)
    secs = sum(r[0] for r in per_request)
    p_tok = sum(r[1] for r in per_request)
    c_tok = sum(r[2] for r in per_request)
    if n_req:
        s_per = secs / n_req
        # per call, each item asked once (every item) or on the share of its sessions where rules are unsure
        asked = [rs for rs in rows.values() if rs]
        per_session_all = float(len(asked))
        per_session_gated = sum(sum(r[4] for r in rs) / len(rs) for rs in asked)
        print(f"\nthroughput on this box ({os.cpu_count()} cores, load {load0[0]:.1f} -> {load1[0]:.1f}; "
              f"{args.threads} server threads): {n_req} requests, {s_per:.1f} s/request, "
              f"{p_tok / n_req:.0f} prompt + {c_tok / n_req:.0f} completion tokens/request, "
              f"{(p_tok + c_tok) / secs:.0f} tokens/s processed")
        print(f"requests per session: every item {per_session_all:.2f}, gated {per_session_gated:.2f} "
              f"({per_session_gated / per_session_all:.0%} of the cost)")
        print(f"sessions/hour on this box for these items: every item {3600 / (s_per * per_session_all):.0f}, "
              f"gated {3600 / (s_per * max(per_session_gated, 1e-9)):.0f}  (wall {wall:.0f} s)")
        report["throughput"] = {"requests": n_req, "s_per_request": round(s_per, 2),
                                "prompt_tokens_per_request": round(p_tok / n_req), "completion_tokens_per_request":
                                round(c_tok / n_req), "requests_per_session_all": round(per_session_all, 2),
                                "requests_per_session_gated": round(per_session_gated, 2),
                                "load_before": round(load0[0], 2), "load_after": round(load1[0], 2)}
        # night of 10,000 calls on one GPU with a 7B model: published request rates at 128 output tokens, taken
        # as they are when our answers are shorter (our prompts are longer: prefill is the cheap part on a GPU),
        # scaled down when longer; +1 summary request per call
        comp = c_tok / n_req
        print("\n10,000 calls on one GPU, 7B model, vLLM (published request rates; +1 summary request per call):")
        for name, rps, out_len in PUBLISHED:
            rps_ours = rps * min(1.0, out_len / max(comp, 1.0))
            for label, per in (("every item", per_session_all + 1), ("gated", per_session_gated + 1)):
                print(f"  {name}: {label}: {10000 * per / rps_ours / 3600:.1f} h")
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
