"""Audio reading: any rate / channel count / container → 16 kHz mono, only the asked range."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from flameqa.speech.audio import NoAudioError, audio_stats, probe_audio, read_audio
from tests.conftest import make_video


def tone(sr: int, seconds: float, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


def peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    f = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[f.argmax()])


@pytest.mark.parametrize("sr,channels", [(8000, 1), (16000, 1), (44100, 2), (48000, 2)])
def test_any_rate_and_channels_become_16k_mono(tmp_path, sr, channels):
    p = tmp_path / f"t{sr}.wav"
    sf.write(str(p), tone(sr, 2.0, channels=channels), sr)
    info = probe_audio(p)
    assert (info.sample_rate, info.channels) == (sr, channels)
    x = read_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 32000) <= 2
    assert abs(peak_hz(x) - 440) < 2


def test_reads_only_the_range(tmp_path):
    sr = 48000
    x = np.zeros(sr * 4, np.float32)
    x[sr * 2 : sr * 3] = tone(sr, 1.0)  # the tone sits in 2-3 s
    p = tmp_path / "r.wav"
    sf.write(str(p), x, sr)
    y = read_audio(p, 1.5, 3.5)
    assert abs(len(y) - 32000) <= 2
    on = np.abs(y) > 0.05
    assert abs(np.flatnonzero(on)[0] / 16000 - 0.5) < 0.01 and abs(np.flatnonzero(on)[-1] / 16000 - 1.5) < 0.01
    assert read_audio(p, 10.0, 12.0).size == 0


def test_container_audio_with_pyav(tmp_path):
    v = make_video(tmp_path / "v.mp4", seconds=3.0, audio=True, sample_rate=44100, channels=2)
    info = probe_audio(v)
    assert info.backend == "pyav" and info.sample_rate == 44100
    y = read_audio(v, 1.0, 2.0)
    assert abs(len(y) - 16000) < 400 and np.abs(y).max() > 0.01


def test_video_without_audio_stream(tmp_path):
    v = make_video(tmp_path / "silent.mp4", seconds=1.0, audio=False)
    with pytest.raises(NoAudioError, match="no audio stream"):
        probe_audio(v)


def test_garbage_file_is_no_audio(tmp_path):
    p = tmp_path / "junk.wav"
    p.write_bytes(b"not audio at all" * 10)
    with pytest.raises(NoAudioError):
        probe_audio(p)


def test_clipping_flag():
    x = np.clip(tone(16000, 1.0) * 10, -1, 1)
    assert "clipped" in audio_stats(x).flags()
    assert audio_stats(tone(16000, 1.0)).flags() == []


def test_stereo_in_a_container_keeps_its_level(tmp_path):
    """Both PyAV paths (the speech reader and ingest's wav extraction) average the channels like
    the WAV reader: FFmpeg's own downmix would make equal channels 1.41x louder (and clip)."""
    import shutil
    import subprocess

    from flameqa.io.media import extract_audio, read_wav

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    t = np.arange(48000 * 2) / 48000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wav = tmp_path / "st.wav"
    sf.write(str(wav), np.stack([x, x], 1), 48000)
    m4a = tmp_path / "st.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "192k", str(m4a)], check=True)
    mid = slice(16000 // 2, -16000 // 2)  # away from the codec's priming and padding
    y = read_audio(m4a, info=probe_audio(m4a))
    assert probe_audio(m4a).channels == 2 and abs(np.abs(y[mid]).max() - 0.5) < 0.03
    extract_audio(m4a, tmp_path / "x.wav")
    z, sr = read_wav(tmp_path / "x.wav")
    assert sr == 16000 and abs(np.abs(z[mid]).max() - 0.5) < 0.03
