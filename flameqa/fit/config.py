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


class SmoothConfig(Config):
    reference_fps: float = 25.0
    rot_acc: float = 0.01
    """Head rotation acceleration std, radians / frame²."""
    transl_acc: float = 0.002
    """Head translation acceleration std, model units (m) / frame²."""
    jaw_acc: float = 0.03
    eyes_acc: float = 0.05
    expression_acc: float = 0.3
    """Expression coefficient acceleration std / frame²."""
    vel_factor: float = 4.0
    """Velocity std = ``vel_factor`` × the acceleration std (a weak first-order term that damps drift)."""


class SolverConfig(Config):
    shape_keyframes: int = 16
    """Frames per track (spread over the track) used to estimate its identity shape."""
    shape_iterations: int = 3
    shape_landmarks: int = 480
    """At most this many landmarks (evenly spread over the model's) in the identity fit: identity
    needs coverage of the face, not density, and this step's cost grows with landmarks × S²."""
    full_iterations: int = 2
    """Tracking iterations that relinearize and refactor the banded normal equations."""
    chord_iterations: int = 0
    """Further tracking iterations that reuse the last factorization with a fresh gradient."""
    coarse_landmarks: int = 160
    """The first tracking iteration's normal equations use at most this many landmarks (evenly
    spread): from the MediaPipe start the first step is limited by nonlinearity, not noise."""
    damping: float = 1e-4
    """Levenberg-Marquardt damping, relative to the normal matrix diagonal."""
    tol: float = 5e-3
    """A chunk has converged when an iteration, or the Newton step at its final point, lowers its
    cost by less than this fraction (the statistical noise of a χ² of ~10⁵ residuals is ~0.3%)."""
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
    n_shape: int = 100
    n_expr: int = 50
    camera: CameraConfig = CameraConfig()
    data: DataConfig = DataConfig()
    prior: PriorConfig = PriorConfig()
    smooth: SmoothConfig = SmoothConfig()
    solver: SolverConfig = SolverConfig()
    validity: ValidityConfig = ValidityConfig()
    init: InitConfig = InitConfig()
