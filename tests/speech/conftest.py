"""Speech fixtures: models loaded once per session, the espeak-ng dialogue synthesized once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def need_data(*parts: str) -> Path:
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test media {p} is absent (../shared/data beside the project root)")
    return p


def need_model(name: str) -> str:
    from flameqa.models import ModelNotFoundError, resolve_model

    try:
        return str(resolve_model(name, kind="whisper"))
    except ModelNotFoundError as e:
        pytest.skip(f"{e}")


@pytest.fixture(scope="session")
def tiny_pipeline():
    """VAD + whisper tiny.en int8 + resemblyzer diarization (the defaults)."""
    from flameqa.speech.config import SpeechConfig
    from flameqa.speech.pipeline import SpeechPipeline

    need_model("whisper-tiny.en")
    return SpeechPipeline(SpeechConfig())


@pytest.fixture(scope="session")
def base_pipeline():
    from flameqa.speech.config import SpeechConfig
    from flameqa.speech.pipeline import SpeechPipeline

    need_model("whisper-base")
    return SpeechPipeline(SpeechConfig(asr_model="whisper-base", diarization_backend="none"))


@pytest.fixture(scope="session")
def dialogue_wav(tmp_path_factory):
    """Two espeak-ng voices (en-us+m3, en-us+f3) taking turns with pauses: (wav path, known turns)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no synthetic dialogue")
    import soundfile as sf

    from flameqa.speech.synth import dialogue

    x, turns = dialogue()
    p = tmp_path_factory.mktemp("dialogue") / "dialogue.wav"
    sf.write(str(p), x, 16000)
    return p, turns
