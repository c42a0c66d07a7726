from __future__ import annotations

from flameqa.configbase import Config


class IngestConfig(Config):
    fps: float = 25.0
    """Target frame rate frames are delivered at to later stages (the field's default is 25)."""
    sample_rate: int = 16000
    """Audio is extracted to mono PCM at this rate."""
    videos_per_shard: int = 4
    """How many input videos make one shard (the unit of resume and parallelism)."""
    shot_threshold: float = 8.0
    """Mean absolute difference (0-255) of consecutive 64×36 gray frames that can mark a cut (it must
    also be 4× the median difference of the previous second)."""
    min_source_fps: float = 1.0
    """Inputs whose average frame rate is lower fail (a slideshow or a sparse stream carries no face
    motion; resampled to ``fps`` it would only repeat frames for hours). 0 accepts any rate."""
    min_clip_s: float = 1.0
    """Shots shorter than this are dropped from `clips` (they are kept in the videos' shot count)."""
    hash_files: bool = True
    """Compute sha256 of each input (duplicate detection, provenance)."""
    allowed_schemes: tuple[str, ...] = ("file",)
    """URI schemes accepted in manifests. Remote schemes must be listed explicitly."""
