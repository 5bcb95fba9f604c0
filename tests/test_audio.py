import numpy as np
import pytest

from qc_pipeline.audio import load_audio
from qc_pipeline.errors import CallError, Reason
from qc_pipeline.testing import write_audio


@pytest.fixture(scope="module")
def speech(samples):
    """Real speech from the bundled stereo call: (2, n) at 16 kHz."""
    audio, info = load_audio(samples / "calls" / "stereo_call_8k.wav")
    assert info.sample_rate == 8000 and info.channels == 2
    return audio


@pytest.mark.parametrize("suffix, rate", [(".wav", 8000), (".flac", 16000), (".mp3", 22050), (".m4a", 44100),
                                          (".ogg", 48000), (".amr", 8000)])
def test_formats_and_rates_decode_without_system_ffmpeg(tmp_path, speech, suffix, rate):
    from qc_pipeline.testing import resample

    clip = resample(speech[:1, :16000 * 3], 16000, rate)
    if suffix in (".wav", ".mp3"):
        clip = np.concatenate([clip, clip * 0.5])  # stereo
    path = write_audio(tmp_path / f"call{suffix}", clip, rate)
    audio, info = load_audio(path)
    assert info.sample_rate == rate
    assert audio.shape[0] == clip.shape[0]
    assert abs(info.duration_s - 3.0) < 0.15
    assert audio.dtype == np.float32 and np.abs(audio).max() > 0.05


def test_stereo_channels_are_not_mixed(speech, tmp_path):
    left_only = np.stack([speech[0], np.zeros_like(speech[0])])
    path = write_audio(tmp_path / "left.wav", left_only, 16000)
    audio, _ = load_audio(path)
    assert np.abs(audio[0]).max() > 0.1
    assert np.abs(audio[1]).max() == 0.0


def _reason(path, **kw):
    with pytest.raises(CallError) as err:
        load_audio(path, **kw)
    return err.value.reason


def test_bad_inputs_have_reason_codes(tmp_path, speech):
    (tmp_path / "zero.wav").write_bytes(b"")
    assert _reason(tmp_path / "zero.wav") == Reason.EMPTY_FILE
    (tmp_path / "notes.wav").write_text("这不是音频文件\n" * 50, encoding="utf-8")
    assert _reason(tmp_path / "notes.wav") == Reason.NOT_AUDIO
    assert _reason(tmp_path / "missing.wav") == Reason.FILE_NOT_FOUND
    from fractions import Fraction

    import av

    with av.open(str(tmp_path / "six.wav"), "w", format="wav") as c:
        st = c.add_stream("pcm_s16le", rate=16000, layout="5.1")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 6 * 1600), np.int16), format="s16", layout="5.1")
        frame.sample_rate, frame.pts, frame.time_base = 16000, 0, Fraction(1, 16000)
        for p in st.encode(frame):
            c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    assert _reason(tmp_path / "six.wav") == Reason.UNSUPPORTED_CHANNELS
    long_ok = write_audio(tmp_path / "long.wav", speech[:, :16000 * 5], 16000)
    assert _reason(long_ok, max_duration_s=2.0) == Reason.TOO_LONG
    assert _reason(long_ok, min_duration_s=10.0) == Reason.TOO_SHORT


def test_truncated_wav_keeps_what_decodes_and_flags_it(tmp_path, speech):
    full = write_audio(tmp_path / "full.wav", speech[:, :16000 * 4], 16000)
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    audio, info = load_audio(cut)
    assert info.truncated
    assert 1.8 < info.duration_s < 2.2
    assert audio.shape[0] == 2 and abs(audio.shape[1] - info.duration_s * 16000) <= 16


def test_unicode_file_name(tmp_path, speech):
    path = write_audio(tmp_path / "客服通话_张三 (1).wav", speech[:, :16000], 16000)
    audio, info = load_audio(path)
    assert info.duration_s == 1.0
