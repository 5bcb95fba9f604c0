"""One call through the ASR backend on the device the config picks: the device choice, the model load, one
call's channels decoded sequentially and batched (30 s pieces, no VAD), with wall times and the text.

    python scripts/gpu_smoke.py                      # asr.device auto: cuda/float16 where CTranslate2 sees a GPU
    python scripts/gpu_smoke.py --set asr.device=cpu # the same on CPU, for the side-by-side text

Used by scripts/gpu_check.sh (issue 17) to tell "CTranslate2 cannot open cuBLAS" from a working GPU path;
exits 1 with the error's first line when the backend fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples/calls/stereo_call_8k.wav"


def loaded_cuda_libraries() -> list[str]:
    """The CUDA libraries this process has mapped (cuBLAS, cuDNN, the CUDA runtime), by file name."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        names = {Path(line.split()[-1]).name for line in maps if re.search(r"lib(cublas|cudnn|cudart)", line)}
    return sorted(names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--audio", default=str(SAMPLE))
    args = ap.parse_args()

    from qc_pipeline.asr.faster_whisper import FasterWhisperBackend
    from qc_pipeline.audio import SAMPLE_RATE, load_audio
    from qc_pipeline.config import load_config

    cfg = load_config(None, tuple(args.set)).asr
    report: dict = {}
    try:
        backend = FasterWhisperBackend(cfg)
        t0 = time.perf_counter()
        backend.load()   # picks the device (pick_device; a SetupError lands in the report as its error)
        report["load_s"] = round(time.perf_counter() - t0, 2)
        audio, info = load_audio(args.audio)
        # the channels whole, cut into 30 s pieces (the backend's window length), as the ASR stage hands them over
        step = 30 * SAMPLE_RATE
        pieces = [(c, ch[i:i + step]) for c, ch in enumerate(audio) for i in range(0, len(ch), step)]
        clips = [clip for _, clip in pieces]
        texts: dict[str, list[str]] = {}
        for name, batch in (("sequential", 0), ("batched", 16)):
            backend.transcribe(clips[:1], "zh", batch)  # warm-up: kernels, cuBLAS handle
            t0 = time.perf_counter()
            out = backend.transcribe(clips, "zh", batch)
            report[f"{name}_s"] = round(time.perf_counter() - t0, 3)
            texts[name] = ["".join(s.text for (c, _), segs in zip(pieces, out) if c == ch for s in segs)
                           for ch in range(audio.shape[0])]
    except Exception as exc:  # noqa: BLE001 - the point is to print what the GPU path fails with
        report["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(json.dumps(report, ensure_ascii=False))
        return 1
    report.update(audio_s=round(info.duration_s, 1), compute_type=backend.compute_type, device=backend.device,
                  same_text=texts["batched"] == texts["sequential"], text=[t[:60] for t in texts["batched"]],
                  cuda_libraries=loaded_cuda_libraries())
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
