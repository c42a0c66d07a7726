from __future__ import annotations

from flameqa.configbase import Config


class FacesConfig(Config):
    model: str = "face_landmarker"
    """Path to a face_landmarker.task bundle or a model-cache name."""
    max_faces: int = 4
    max_segment_frames: int = 750
    """Face-track rows are cut into windows of at most this many frames (30 s at 25 fps)."""
    allow_download: bool = False


class SpeakersConfig(Config):
    min_score: float = 0.2
    """A speaker maps to a face track only when the correlation score reaches this."""
