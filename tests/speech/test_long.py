"""Long recordings are read in blocks/windows: memory follows the window, not the file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

SR = 16000


def _long_file(path, minutes: float, at: list[float]):
    from flameqa.speech.synth import speak

    utts = {t: speak(f"This is sentence number {i + 1} of the long recording.", "en-us+m3") for i, t in enumerate(at)}
    with sf.SoundFile(str(path), "w", SR, 1, "PCM_16") as f:  # written in pieces: the test itself stays small
        t = 0.0
        rng = np.random.default_rng(0)
        for start in sorted(utts):
            n = int((start - t) * SR)
            for k in range(0, n, SR * 60):
                f.write((0.001 * rng.standard_normal(min(SR * 60, n - k))).astype(np.float32))
            f.write(utts[start])
            t = start + len(utts[start]) / SR
        n = int((minutes * 60 - t) * SR)
        for k in range(0, n, SR * 60):
            f.write((0.001 * rng.standard_normal(min(SR * 60, n - k))).astype(np.float32))


def _run(tmp_path, monkeypatch, tiny_pipeline, minutes, at, block_s, window_s):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from flameqa.speech import pipeline as P
    from flameqa.speech.config import AsrConfig, VadConfig

    p = tmp_path / "long.wav"
    _long_file(p, minutes, at)
    reads = []
    real = P.read_audio

    def spy(path, a=0.0, b=None, info=None):
        x = real(path, a, b, info=info)
        reads.append(len(x) / SR)
        return x

    monkeypatch.setattr(P, "read_audio", spy)
    old = tiny_pipeline.config, tiny_pipeline.vad.config, tiny_pipeline.asr.config
    vad, asr = VadConfig(block_s=block_s), AsrConfig(window_s=window_s)
    tiny_pipeline.config = old[0].model_copy(update={"vad": vad, "asr": asr})
    tiny_pipeline.vad.config, tiny_pipeline.asr.config = vad, asr
    try:
        r = tiny_pipeline.process(p)
    finally:
        tiny_pipeline.config, tiny_pipeline.vad.config, tiny_pipeline.asr.config = old
    return r, reads


def test_ten_minutes_in_bounded_reads(tmp_path, monkeypatch, tiny_pipeline):
    at = [30.0, 250.0, 540.0]
    r, reads = _run(tmp_path, monkeypatch, tiny_pipeline, 10, at, block_s=60, window_s=60)
    assert r.status == "ok" and max(reads) <= 60.5, str(reads)
    text = " ".join(w.word.word for w in r.words).lower()
    for i, t in enumerate(at):
        assert f"number {['one', 'two', 'three'][i]}" in text.replace("1", "one").replace("2", "two").replace("3", "three")
        assert any(abs(turn.start_s - t) < 0.5 for turn in r.turns)


@pytest.mark.slow
def test_one_hour_memory_bounded(tmp_path, monkeypatch, tiny_pipeline, request):
    import tracemalloc

    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("soak test (~4 min): run with -m slow (make soak)")

    at = [60.0 + 300.0 * k for k in range(12)]
    tracemalloc.start()
    r, reads = _run(tmp_path, monkeypatch, tiny_pipeline, 60, at, block_s=600, window_s=300)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.status == "ok" and len(r.turns) >= 12
    assert max(reads) <= 600.5
    assert peak < 400 * 2**20, f"peak traced memory {peak / 2**20:.0f} MiB"  # the hour itself is 230 MB as float32
