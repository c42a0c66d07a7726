from __future__ import annotations

from typing import Literal

from flameqa.configbase import Config


class SpeechConfig(Config):
    asr_backend: Literal["faster-whisper", "whisperx"] = "faster-whisper"
    """ASR engine; whisperx is an optional extra (it pins its own torch)."""
    asr_model: str = "whisper-tiny.en"
    """A local CTranslate2 model folder, a model-cache name, or (with allow_download) a hub name."""
    diarization_backend: Literal["embeddings", "pyannote"] = "embeddings"
    num_speakers: int | None = None
    """Known number of speakers per clip; None estimates it."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    allow_download: bool = False
