"""Config of the fit stage (batched FLAME fitting to MediaPipe landmarks).

Units: landmark noise and robust scales are fractions of the track's inter-ocular distance (IOD,
MediaPipe points 33 and 263), so one config serves every resolution; smoothness is given as the
standard deviation of a parameter's frame-to-frame velocity / acceleration at ``reference_fps`` and
rescaled to the clip's fps.
"""

from __future__ import annotations

from typing import Literal

from flameqa.configbase import Config


class CameraConfig(Config):
    model: Literal["pinhole"] = "pinhole"
    """Pinhole with one focal length per video (see flameqa.fit.camera for why it is not estimated)."""
    vfov_deg: float = 63.0
    """Vertical field of view that sets the focal: 63° is MediaPipe's own camera, which its
    facial transformation matrices (the initialization) assume."""
    focal_px: float | None = None
    """A known focal length in pixels (calibrated camera); overrides ``vfov_deg``."""


class DataConfig(Config):
    noise_iod: float = 0.012
    """Expected landmark noise (per coordinate) as a fraction of the inter-ocular distance."""
    robust: Literal["l2", "huber", "geman_mcclure"] = "huber"
    """Robust kernel of the reprojection term."""
    robust_scale: float = 3.0
    """Kernel scale in units of the noise: residuals beyond it are down-weighted."""
    weight_oval: float = 0.3
    """Weight of the face-oval landmarks above the chin: MediaPipe puts them on the visible
    silhouette, which slides over the surface as the head turns, so they are not fixed surface
    points. The chin's oval points keep full weight: they carry the jaw opening."""
    weight_iris: float = 1.0
    weight_other: float = 1.0
    visibility: bool = True
    """Down-weight landmarks whose surface faces away from the camera (self-occluded)."""
    min_det_score: float = 0.3
    """Frames with a lower face-presence score are treated as not detected."""
    min_landmarks: float = 0.5
    """Frames with fewer finite landmarks (fraction of the fitted set) are treated as not detected."""


class PriorConfig(Config):
    shape_std: float = 1.0
    """Standard deviation of each identity coefficient (the bases are in units of one std)."""
    expression_std: float = 1.0
    jaw_open_std: float = 0.4
    """radians, rotation about x (opening)."""
    jaw_side_std: float = 0.05
    """radians, rotations about y and z."""
    eyes_std: float = 0.4
    eyes_sym_std: float = 0.1
    """radians: how far the two eyes may rotate differently."""


#: Acceleration standard deviations (per frame², at ``reference_fps``) of each preset:
#: (rotation rad, translation m, jaw rad, eyes rad, expression coefficient).
SMOOTH_PRESETS: dict[str, tuple[float, float, float, float, float]] = {
    # Output for training sets: head pose and gaze nearly as steady as a tripod shot, expression and
    # jaw smoothed hard. On GRID clips the fitted landmarks accelerate 0.3–0.45× as much as
    # MediaPipe's raw ones at ~0.9% NME; fast syllables lose amplitude (on the synthetic benchmark's
    # 1.5–4 Hz speech the jaw error is ~2.3° against ~0.65° with ``tracking``).
    "dataset": (1e-4, 2e-5, 2e-3, 1e-3, 5e-3),
    # Fidelity to fast motion (2–4 Hz jaw and lip movement, head turns): what the synthetic
    # benchmark measures; real MediaPipe tracks keep ~0.7–0.9× their raw acceleration.
    "tracking": (1e-2, 2e-3, 3e-2, 5e-2, 3e-1),
}


class SmoothConfig(Config):
    preset: Literal["dataset", "tracking"] = "dataset"
    """Default standard deviations (below, when left unset): ``dataset`` favours steady, smooth
    motion (jitter ≤ 0.5× MediaPipe's), ``tracking`` favours following fast motion exactly."""
    reference_fps: float = 25.0
    rot_acc: float | None = None
    """Head rotation acceleration std, radians / frame² (None: the preset's)."""
    transl_acc: float | None = None
    """Head translation acceleration std, model units (m) / frame²."""
    jaw_acc: float | None = None
    eyes_acc: float | None = None
    expression_acc: float | None = None
    """Expression coefficient acceleration std / frame²."""
    vel_factor: float = 4.0
    """Velocity std = ``vel_factor`` × the acceleration std (a weak first-order term that damps drift)."""
    robust_scale: float | None = None
    """Huber scale of the acceleration prior in standard deviations (None: quadratic). Small
    accelerations are then smoothed hard while large ones (a jaw snapping open, a blink) pay only
    linearly."""

    def accelerations(self) -> tuple[float, float, float, float, float]:
        """(rotation, translation, jaw, eyes, expression) acceleration stds after the preset."""
        base = SMOOTH_PRESETS[self.preset]
        given = (self.rot_acc, self.transl_acc, self.jaw_acc, self.eyes_acc, self.expression_acc)
        return tuple(b if g is None else g for b, g in zip(base, given))  # type: ignore[return-value]


class SolverConfig(Config):
    shape_keyframes: int = 16
    """Frames per track (spread over the track) used to estimate its identity shape."""
    shape_iterations: int = 2
    shape_landmarks: int = 480
    """At most this many landmarks (evenly spread over the model's) in the identity fit: identity
    needs coverage of the face, not density, and this step's cost grows with landmarks × S²."""
    full_iterations: int = 2
    """Tracking iterations that relinearize and refactor the banded normal equations."""
    chord_iterations: int = 0
    """Further tracking iterations that reuse the last factorization with a fresh gradient."""
    smooth_iterations: int = 2
    """With a preset other than ``tracking``: iterations under its prior after ``full_iterations``
    under the tracking prior (a continuation; see flameqa.fit.solver.solve_sequence)."""
    hessian_landmarks: int | None = None
    """Later full iterations form the normal matrix from at most this many landmarks (rescaled), the
    gradient from all of them: an inexact Newton step, cheaper per iteration. None: all landmarks."""
    coarse_landmarks: int = 160
    """The first tracking iteration's normal equations use at most this many landmarks (evenly
    spread): from the MediaPipe start the first step is limited by nonlinearity, not noise."""
    damping: float = 1e-4
    """Levenberg-Marquardt damping, relative to the normal matrix diagonal."""
    tol: float = 0.02
    """A chunk has converged when its last full step lowered the cost by what the Gauss-Newton model
    predicted to within this fraction of the cost (the step then landed at the model's optimum, and
    what further steps could gain is of that order), or by less than this fraction."""
    chunk_frames: int = 256
    """Long tracks are fitted in chunks of this many frames..."""
    chunk_overlap: int = 32
    """...overlapping by this many frames, cross-faded in the middle of the overlap."""
    batch_frames: int | None = None
    """Frames (chunks × padded length) solved together; None: 8192 on CPU, 65536 on CUDA. The
    banded solve sweeps over time once per batch, so larger batches amortize it better."""
    slice_frames: int | None = None
    """Frames whose Jacobians exist at once (memory: ~0.25 MB per frame for 478 landmarks);
    None: 1024 on CPU, 16384 on CUDA."""


class ValidityConfig(Config):
    max_nme: float = 0.08
    """A frame whose landmark error exceeds this fraction of the IOD is marked diverged (valid=false)."""


class InitConfig(Config):
    regressor: str | None = None
    """Optional ``package.module:factory`` returning a parameter regressor (DECA/EMOCA/SMIRK-style,
    installed and licensed by the user) that seeds shape/expression/jaw; None: MediaPipe pose only."""
    regressor_args: dict[str, str | int | float | bool] = {}


class FitConfig(Config):
    model: str = "demo"
    """FLAME model file (generic_model.pkl, flame2023.pkl, .npz), or ``demo`` for the generated demo head."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    """``auto``: cuda when available."""
    cpu_threads: int | None = 1
    """torch intra-op threads when fitting on CPU (None: torch's default). One thread per process is
    the robust choice: torch's thread pool slows down by an order of magnitude when the cores are
    shared with other work; use more runner workers (processes) to occupy more cores."""
    n_shape: int = 100
    n_expr: int = 50
    camera: CameraConfig = CameraConfig()
    data: DataConfig = DataConfig()
    prior: PriorConfig = PriorConfig()
    smooth: SmoothConfig = SmoothConfig()
    solver: SolverConfig = SolverConfig()
    validity: ValidityConfig = ValidityConfig()
    init: InitConfig = InitConfig()
