"""Configs of the face stages: ``faces`` (landmarks, tracks) and ``speakers`` (active speaker)."""

from __future__ import annotations

from flameqa.configbase import Config


class LandmarkerConfig(Config):
    """MediaPipe FaceLandmarker (Tasks API) settings."""

    model: str = "face_landmarker"
    """Path to a ``face_landmarker.task`` bundle, or a model-cache name (filled by ``make setup``)."""
    allow_download: bool = False
    """Fetch the official bundle when neither a path nor the cache has it (never in tests)."""
    max_faces: int = 4
    """Most faces MediaPipe looks for per frame; extra faces beyond this are not seen."""
    adapt_faces: bool = True
    """Look for as many faces as the BlazeFace scores see (up to ``max_faces``), not always
    ``max_faces``. A graph that tracks fewer faces than it looks for runs its detector on every
    frame and re-seeds each face's crop from it: 2.4–3× the frame-to-frame landmark motion of
    tracking on one face, and ~5–15 % more CPU (see landmarker.py). A face that enters mid-clip is
    landmarked from the next score on (≤ ``det_score_every`` frames late). Needs
    ``det_score_every`` > 0; off (or without scores): always ``max_faces``."""
    min_detection_confidence: float = 0.5
    """BlazeFace score a new face needs (MediaPipe's default)."""
    min_presence_confidence: float = 0.5
    """Landmark-model face presence needed to keep a face (MediaPipe's default)."""
    min_tracking_confidence: float = 0.5
    """Below this the landmarker re-detects instead of following last frame's face (MediaPipe's default)."""
    max_side: int = 1920
    """Frames whose longer side exceeds this (4K) are downscaled by the decoder before MediaPipe;
    landmarks are mapped back to full-resolution pixels. MediaPipe crops faces to 256 px
    internally, so only very small faces in very large frames lose anything."""
    det_score_every: int = 5
    """Score faces with the bundle's BlazeFace detector on every N-th frame and on the frame after
    the number of faces changed; a track's frames in between carry its latest score (its first
    frames, its first score). The detector runs in a second thread beside the landmarker and costs
    ~17 % of a landmarker call in CPU per scored frame. 1: every frame; 0: no detector,
    ``det_score`` is 1.0 on detected frames."""
    det_score_min: float = 0.1
    """Detector threshold used for scoring only (a tracked face the detector misses scores 0)."""


class FacesConfig(Config):
    landmarker: LandmarkerConfig = LandmarkerConfig()
    max_segment_frames: int = 750
    """Face-track rows are cut into windows of at most this many frames (30 s at 25 fps)."""
    max_gap_frames: int = 25
    """A track survives this many frames without its face (occlusion, turning away, a blink of the
    detector); the missing frames are kept with ``detected=false``. Longer absences end the track."""
    min_track_frames: int = 5
    """Tracks with fewer detected frames are dropped as spurious (counted in the shard marker)."""
    min_iou: float = 0.2
    """Bounding-box IoU needed to link a face to a track's last box ..."""
    max_center_shift: float = 0.6
    """... or a centre shift below this fraction of the face size (fast motion, after a gap)."""
    min_face_px: float = 64.0
    """Faces whose median landmark-box size (full-resolution pixels) is below this get ``small_face``."""
    profile_yaw_deg: float = 45.0
    """Segments where most detected frames turn further than this get ``profile``."""
    many_faces: int = 3
    """Segments with at least this many faces in one frame get ``many_faces``."""
    black_luma: float = 12.0
    """Frames whose mean luma (0-255) is below this count as black (flag ``black_frames``)."""
    piece_s: float = 30.0
    """Clips (shots) longer than 1.5× this are landmarked in pieces of about this length, which the
    stage's processes share (a one-shot hour would otherwise be one process's work). Each piece
    starts its own tracking; tracks that cross a boundary are joined again (same ``track_id``,
    segments numbered on), so a piece costs one re-detected crop. The pieces depend only on the
    clip, not on the process count: results are the same on any machine. 0: never split."""
    decode_runs: bool = True
    """Decode consecutive clips (shots) of one video in one pass: one seek per run of clips instead
    of one per clip, each of which decodes again from the keyframe before it. Same frames."""
    decode_threads: int = 2
    """Decoder threads per landmark process (0: FFmpeg's one per core). The stage runs one landmark
    process per core: with FFmpeg's default a 16-core node ran 16 × 16 decoder threads, and one
    process's CPU per frame was twice the landmarker's own (H200 node, bench/README.md)."""
    opencv_threads: int = 1
    """OpenCV threads per landmark process (its YUV→RGB conversion): 1, for the same reason."""
    spool_mb: int = 256
    """Output rows of one clip beyond this size are spooled to a memory-mapped Arrow file under
    ``OUT/tmp`` instead of RAM, so a 1-hour clip does not hold gigabytes of landmarks in memory."""


class SpeakersConfig(Config):
    min_score: float = 0.2
    """A speaker maps to a face track only when the correlation score reaches this."""
    window_s: float = 0.5
    """Mouth activity = rolling standard deviation of mouth opening over this window; voice
    activity is smoothed by the same window so the two signals have the same time resolution."""
    talk_activity: float = 0.02
    """Mouth activity (std of mouth opening, in outer-eye-distance units) of a clearly talking face
    (GRID speakers: ~0.04; idle faces: < 0.006). A pair's correlation is scaled by
    min(1, activity while the voice is on / this), so a face that barely moves cannot take a voice
    on a chance correlation."""
    min_overlap_s: float = 1.0
    """A track and a speaker must share at least this much time (track visible, speaker talking)
    for their score to count."""
