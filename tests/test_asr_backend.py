"""The ASR stage's own logic on a scripted backend (no model): window packing, clip → call time mapping,
GPU out-of-memory halving, prompt-echo guard, low-confidence marking; the backend registry."""

import numpy as np
import pytest

from qc_pipeline.asr.base import Segment, Word
from qc_pipeline.asr.fake import FakeAsrBackend, words_from_bursts
from qc_pipeline.asr.registry import backend_uses_gpu, make_backend
from qc_pipeline.config import load_config
from qc_pipeline.errors import CallError, ConfigError, Reason, SetupError
from qc_pipeline.records import (
    FLAG_LOW_ASR_CONFIDENCE,
    ROLE_AGENT,
    ROLE_CUSTOMER,
    CallRecord,
    CallSource,
    SpeechSpan,
    Utterance,
    low_confidence_share,
)
from qc_pipeline.stages.asr import AsrStage, Window, pack_windows

SR = 16000


def _call(bursts: dict[int, list[tuple[float, float]]], seconds: float = 40.0, pad: float = 0.3, quiet=()):
    """A stereo call with short bursts at known times, and one VAD span (burst ± pad) per burst; bursts whose
    start is in ``quiet`` are at a lower level."""
    audio = np.zeros((2, int(seconds * SR)), np.float32)
    spans = []
    for ch, times in bursts.items():
        for s, e in times:
            audio[ch, int(s * SR):int(e * SR)] = 0.2 if s in quiet else 0.5
            spans.append(SpeechSpan(ch, round(s - pad, 3), round(e + pad, 3), ROLE_AGENT if ch == 0 else ROLE_CUSTOMER))
    spans.sort(key=lambda x: (x.start, x.channel))
    return CallRecord(source=CallSource("c1"), audio=audio, agent_channel=0, spans=tuple(spans))


def _stage(backend, *overrides):
    cfg = load_config(overrides=overrides)
    return AsrStage(cfg.asr, cfg.vad, backend=backend)


BURSTS = {0: [(1.0, 1.5), (9.0, 9.8), (20.0, 20.4), (31.0, 32.0)], 1: [(4.0, 4.6), (15.0, 15.2), (26.0, 27.0)]}


def test_pack_windows_respects_window_length():
    spans = [SpeechSpan(0, float(i * 10), float(i * 10 + 4), "agent") for i in range(7)]   # 4 s each
    windows = pack_windows(spans, 10.0)
    assert [len(w) for w in windows] == [2, 2, 2, 1]
    assert all(sum(s.duration for s in w) <= 10.0 for w in windows)
    assert [s for w in windows for s in w] == spans                                          # order, nothing lost
    assert pack_windows([SpeechSpan(0, 0.0, 12.0, "agent")], 10.0) == [[SpeechSpan(0, 0.0, 12.0, "agent")]]


def test_window_maps_clip_times_to_the_call():
    audio = np.zeros(20 * SR, np.float32)
    w = Window(audio, [SpeechSpan(0, 2.0, 3.0, "agent"), SpeechSpan(0, 10.0, 12.0, "agent")])
    assert len(w.clip) == 3 * SR
    assert w.word_to_call(Word(0.25, 0.5, "a", 0.9)) == Word(2.25, 2.5, "a", 0.9)
    assert w.word_to_call(Word(1.5, 2.0, "b", 0.9)) == Word(10.5, 11.0, "b", 0.9)
    # a word straddling the cut is placed by its middle: both ends move with the same span
    assert w.word_to_call(Word(0.9, 1.3, "c", 0.9)) == Word(9.9, 10.3, "c", 0.9)


@pytest.mark.parametrize("batch", ["0", "4"])
def test_words_land_at_their_call_times_across_windows_and_channels(batch):
    backend = FakeAsrBackend()
    rec = _stage(backend, "asr.window_s=5", f"asr.batch_size={batch}").process(_call(BURSTS))
    got = sorted((u.channel, w.start, w.end) for u in rec.utterances for w in u.words)
    want = sorted((ch, s, e) for ch, times in BURSTS.items() for s, e in times)
    assert got == want
    n_windows = len(pack_windows([s for s in rec.spans if s.channel == 0], 5)) + \
        len(pack_windows([s for s in rec.spans if s.channel == 1], 5))
    assert n_windows > 2 and backend.calls == [(n_windows, int(batch))]
    # every utterance sits on its own channel's turn, with that channel's role
    assert {(u.channel, u.role) for u in rec.utterances} == {(0, ROLE_AGENT), (1, ROLE_CUSTOMER)}


def test_process_many_matches_process_one_by_one():
    calls = [_call(BURSTS), _call({0: [(2.0, 2.5)], 1: [(5.0, 6.0), (8.0, 8.5)]})]
    together = _stage(FakeAsrBackend(), "asr.batch_size=4").process_many(calls)
    alone = [_stage(FakeAsrBackend(), "asr.batch_size=4").process(c) for c in calls]
    assert [r.utterances for r in together] == [r.utterances for r in alone]


def test_gpu_out_of_memory_halves_the_batch_until_it_fits():
    backend = FakeAsrBackend(device="cuda", oom_above=3)
    stage = _stage(backend, "asr.window_s=5")            # batch_size auto
    rec = stage.process(_call(BURSTS))
    sizes = [b for _n, b in backend.calls]
    assert sizes == [16, 8, 4, 2]                        # auto on a GPU is 16; halved until <= 3
    assert sum(len(u.words) for u in rec.utterances) == 7
    with pytest.raises(CallError) as err:
        _stage(FakeAsrBackend(device="cuda", oom_above=0), "asr.batch_size=2").process(_call(BURSTS))
    assert err.value.reason == Reason.INTERNAL_ERROR and "batch size 1" in err.value.detail


def test_auto_batch_size_asks_the_backend():
    assert _stage(FakeAsrBackend(device="cuda")).batch_size == 16
    assert _stage(FakeAsrBackend(device="cpu")).batch_size == 4
    assert _stage(FakeAsrBackend(device="cuda"), "asr.batch_size=0").batch_size == 0


def _saying(text: str, prob: float = 0.9, logprob: float = -0.2):
    def recognise(clip):
        segs = words_from_bursts(clip)
        return [Segment(s.start, s.end, text, tuple(Word(w.start, w.end, text, prob) for w in s.words[:1]),
                        logprob, 0.01) for s in segs]
    return recognise


def test_prompt_echo_is_dropped_and_counted():
    stage = _stage(FakeAsrBackend(_saying("简体。")), "asr.hotwords=简体")
    rec = stage.process(_call({0: [(1.0, 1.5)], 1: [(4.0, 4.6)]}))
    assert not rec.utterances and dict(rec.drops)["prompt_echo"] == 2 and "no_transcript" in rec.flags
    # the same text without the hotword configured is speech, and real words around a hotword are kept
    assert _stage(FakeAsrBackend(_saying("简体。"))).process(_call({0: [(1.0, 1.5)]})).utterances
    kept = _stage(FakeAsrBackend(_saying("我要简体版")), "asr.hotwords=简体").process(_call({0: [(1.0, 1.5)]}))
    assert kept.utterances[0].text == "我要简体版"


@pytest.mark.parametrize("prob,logprob,low", [(0.9, -0.2, False), (0.3, -0.2, True), (0.9, -1.5, True)])
def test_low_confidence_utterances_and_session_flag(prob, logprob, low):
    rec = _stage(FakeAsrBackend(_saying("好的", prob, logprob))).process(_call({0: [(1.0, 1.5)], 1: [(4.0, 4.6)]}))
    assert [u.low_confidence for u in rec.utterances] == [low, low]
    assert (FLAG_LOW_ASR_CONFIDENCE in rec.flags) == low
    assert low_confidence_share(rec.utterances) == (1.0 if low else 0.0)


def test_low_confidence_share_weighs_speech_time():
    utts = (Utterance(0, "agent", 0, 0.0, 3.0, "a", low_confidence=True),
            Utterance(1, "customer", 1, 3.0, 12.0, "b"))
    assert low_confidence_share(utts) == 0.25
    assert low_confidence_share((Utterance(0, "agent", -1, None, None, "chat"),)) is None


def _unsure_when_quiet(clip):
    """Words over quiet audio come back with a low probability."""
    return [Segment(s.start, s.end, s.text, tuple(
        Word(w.start, w.end, w.word, 0.2 if clip[int((w.start + w.end) / 2 * SR)] < 0.3 else 0.9) for w in s.words),
        s.avg_logprob, s.no_speech_prob) for s in words_from_bursts(clip)]


@pytest.mark.parametrize("quiet,flagged", [((1.0,), False), ((1.0, 9.0), True)])
def test_session_flag_needs_the_configured_share_of_speech(quiet, flagged):
    """Four equally long turns: one unsure turn (25%) stays under the default 30%, two (50%) flag the call."""
    bursts = {0: [(1.0, 2.0), (9.0, 10.0)], 1: [(4.0, 5.0), (13.0, 14.0)]}
    rec = _stage(FakeAsrBackend(_unsure_when_quiet)).process(_call(bursts, quiet=quiet))
    assert sum(u.low_confidence for u in rec.utterances) == len(quiet)
    assert (FLAG_LOW_ASR_CONFIDENCE in rec.flags) == flagged


def test_registry():
    cfg = load_config(overrides=("asr.device=cpu",))
    assert backend_uses_gpu(cfg.asr) is False
    assert type(make_backend(cfg.asr)).__name__ == "FasterWhisperBackend"
    bad = load_config(overrides=("asr.backend=nope",))
    with pytest.raises(ConfigError) as err:
        make_backend(bad.asr)
    assert err.value.key == "asr.backend"
    with pytest.raises(ConfigError):
        backend_uses_gpu(bad.asr)


@pytest.mark.parametrize("cublas", [True, False])
def test_device_choice_needs_cublas_where_a_gpu_is_visible(monkeypatch, caplog, cublas):
    """A GPU that CTranslate2 sees is only used where it can also open cuBLAS 12 (a CUDA-13-only host without
    the [gpu] extra cannot): ``auto`` then decodes on the CPU with a warning naming the fix, and ``cuda`` is a
    SetupError before any call, instead of every call failing at its first matrix product."""
    import ctranslate2

    from qc_pipeline import gpu
    from qc_pipeline.asr.faster_whisper import pick_device

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    with pytest.raises(SetupError, match="sees no GPU"):  # asked for cuda on a host without one
        pick_device("cuda", "auto")
    assert pick_device("auto", "auto") == ("cpu", "int8")
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(gpu, "cublas_loadable", lambda: cublas)
    cfg = load_config(overrides=("asr.device=cuda",))
    if cublas:
        assert pick_device("auto", "auto") == ("cuda", "float16")
        assert pick_device("cuda", "int8_float16") == ("cuda", "int8_float16")
        assert backend_uses_gpu(cfg.asr) is True
        return
    with caplog.at_level("WARNING"):
        assert pick_device("auto", "auto") == ("cpu", "int8")
    assert "libcublas.so.12" in caplog.text and "qc-pipeline[gpu]" in caplog.text
    with pytest.raises(SetupError, match=r"asr.device is cuda.*qc-pipeline\[gpu\]"):
        backend_uses_gpu(cfg.asr)


def test_asr_device_cuda_is_checked_when_a_worker_starts(monkeypatch):
    """``asr.device: cuda`` on a GPU that CTranslate2 cannot use fails the worker's setup (a SetupError before any
    call), whatever the batch and group settings; ``auto`` leaves the choice to the model load."""
    import ctranslate2

    from qc_pipeline import gpu

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(gpu, "cublas_loadable", lambda: False)
    for overrides in ((), ("asr.batch_size=0", "run.calls_per_task=1")):
        with pytest.raises(SetupError, match="asr.device is cuda"):
            _stage(None, "asr.device=cuda", *overrides).setup()
    _stage(None, "asr.device=auto").setup()


@pytest.mark.parametrize("workers,device,advised", [(1, "auto", True), (2, "auto", False), (1, "cpu", False)])
def test_one_worker_on_a_gpu_is_told_to_use_more(monkeypatch, caplog, workers, device, advised):
    """On an H200 one worker left the GPU 93 % idle (docs/gpu.md): the local engine says so, once, when the first
    audio call of a run will go to a GPU with one worker (not for chat sessions), and passes every call on."""
    import qc_pipeline.asr.registry as registry
    from qc_pipeline.executors import local
    from qc_pipeline.records import KIND_CHAT, CallSource

    monkeypatch.setattr(registry, "backend_uses_gpu", lambda cfg: cfg.device != "cpu")
    ex = local.LocalExecutor(load_config(overrides=(f"asr.device={device}",)), workers)
    assert ex.advise == advised
    assert ex.group_size == (8 if device != "cpu" else 1)
    chats = [CallSource(f"chat{i}", kind=KIND_CHAT) for i in range(2)]
    calls = chats + [CallSource("call1"), CallSource("call2")]
    with caplog.at_level("WARNING", logger="qc_pipeline.executors.local"):
        assert list(local._advise_on_first_audio(chats)) == chats and caplog.text == ""
        assert list(local._advise_on_first_audio(calls)) == calls
    assert caplog.text.count("7 % busy") == 1 and "--workers N" in caplog.text


@pytest.mark.parametrize("message,oom", [
    ("CUDA failed with error out of memory", True),
    ("parallel_for failed: cudaErrorInvalidDevice: invalid device ordinal", True),
    ("CUDA failed with error an illegal memory access was encountered", False),
])
def test_ctranslate2_errors_that_mean_out_of_memory(monkeypatch, message, oom):
    """Both ways CTranslate2 reports a starved GPU start the batch halving; other errors pass through."""
    from qc_pipeline.asr.base import AsrOutOfMemory
    from qc_pipeline.asr.faster_whisper import FasterWhisperBackend

    backend = FasterWhisperBackend(load_config().asr)

    def fail(*_args, **_kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(backend, "_batch", fail)
    with pytest.raises(AsrOutOfMemory if oom else RuntimeError) as err:
        backend.transcribe([np.zeros(SR, np.float32)], "zh", 4)
    assert isinstance(err.value, AsrOutOfMemory) == oom


class _LoopsWhenBatched(FakeAsrBackend):
    """Like whisper at temperature 0 on a short telephone clip: batched decoding loops; decoding the clip on
    its own (with the temperature fallback) does not."""

    def transcribe(self, clips, language, batch_size):
        self.calls.append((len(clips), batch_size))
        if batch_size > 0:
            return [[Segment(0.0, 0.5, "轻" * 8, tuple(Word(0.05 * k, 0.05 * k + 0.05, "轻", 0.3) for k in range(8)),
                             -0.4, 0.1)] for _ in clips]
        return [self.recognise(c) for c in clips]


def test_windows_that_loop_in_a_batch_are_decoded_again_with_the_fallback():
    backend = _LoopsWhenBatched()
    rec = _stage(backend, "asr.batch_size=4").process(_call({0: [(1.0, 1.5)], 1: [(4.0, 4.6)]}))
    assert backend.calls == [(2, 4), (2, 0)]                  # one batched pass, then the two windows alone
    assert [w.word for u in rec.utterances for w in u.words] == ["w0", "w0"]
    assert "repetition_loop_words" not in dict(rec.drops)
    # without fallback temperatures, or when decoding one by one already, nothing is decoded twice
    backend = _LoopsWhenBatched()
    rec = _stage(backend, "asr.batch_size=4", "asr.temperatures=[0.0]").process(_call({0: [(1.0, 1.5)]}))
    assert backend.calls == [(1, 4)] and dict(rec.drops)["repetition_loop_words"] == 7
    backend = _LoopsWhenBatched()
    _stage(backend, "asr.batch_size=0").process(_call({0: [(1.0, 1.5)]}))
    assert backend.calls == [(1, 0)]
