"""The fit stage: ``faces`` rows (MediaPipe landmarks per track segment) → ``flame`` rows.

Rows of one face track (same clip and track id) are joined in frame order and fitted as one track
(one identity, smoothness across segment boundaries); where frame indices jump, the track is split
into separately tracked runs that still share the identity. Results are cut back into one output
row per input row. A segment whose track has no detected frame, or whose input row failed upstream,
becomes a row with ``status`` and ``error`` set; per-frame arrays are always present, with
``valid`` = false where no face was seen or the fit diverged.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from flameqa.fit.config import FitConfig
from flameqa.io.schema import conform
from flameqa.stages.base import Stage, StageContext

log = logging.getLogger(__name__)

EXPR_COLUMNS = 100


def resolve_device(requested: str, ctx_device: str | None = None) -> str:
    """``auto`` → the context's device when it names a GPU, else ``cuda`` when available, else ``cpu``."""
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"fit.device={requested!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
        return requested
    if ctx_device and ctx_device.startswith("cuda") and torch.cuda.is_available():
        return ctx_device
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_fitter(cfg: FitConfig, device: str = "auto", layer: Any = None):
    """Load the model (unless ``layer`` is given), restrict it to its landmarks, align MediaPipe's
    canonical mesh to it, and return a :class:`flameqa.fit.fitter.Fitter` on ``device``."""
    import torch

    from flameqa.fit.fitter import Fitter
    from flameqa.fit.init import canonical_alignment
    from flameqa.fit.model import LandmarkModel
    from flameqa.flame import FlameLayer

    dev = resolve_device(device if device != "auto" else cfg.device)
    if layer is None:
        layer = FlameLayer.from_file(cfg.model, n_shape=cfg.n_shape, n_expr=cfg.n_expr)
    if not getattr(layer, "has_mediapipe", True):
        raise ValueError(f"model {cfg.model!r} has no MediaPipe landmark embedding: put mediapipe_landmark_embedding.npz next to it")
    model = LandmarkModel.from_layer(layer, dtype=torch.float64)
    align = None
    try:
        from flameqa.flame.canonical_mesh import read_canonical_mesh

        align = canonical_alignment(model, read_canonical_mesh().vertices.astype(np.float64))
    except (FileNotFoundError, ValueError) as e:
        log.warning("no MediaPipe canonical mesh (%s): head rotations are initialized from the landmarks instead of the transformation matrices", e)
    return Fitter(model.to(dtype=torch.float32), cfg, device=dev, align=align)


def _per_frame(col: pa.ChunkedArray | pa.Array, width: int, dtype: Any) -> list[np.ndarray | None]:
    """A ``list<fixed_size_list<float32, width>>`` (or ``list<scalar>``) column → one ``[T, width]``
    (``[T]``) array per row, converting the column's buffers once."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    offsets = col.offsets.to_numpy()
    flat = col.values
    if pa.types.is_fixed_size_list(flat.type):
        flat = flat.flatten()
    vals = flat.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    out: list[np.ndarray | None] = []
    for i in range(len(col)):
        if not valid[i]:
            out.append(None)
            continue
        a, b = offsets[i], offsets[i + 1]
        out.append(vals[a * width:b * width].reshape(b - a, width) if width > 1 else vals[a:b])
    return out


def _batch_arrays(batch: pa.Table) -> list[dict[str, Any]]:
    """Per input row: frame_idx ``[T]``, detected ``[T]``, det_score ``[T]`` | None, landmarks
    ``[T, 478, 3]`` (NaN where missing), transform ``[T, 4, 4]`` | None."""
    fidx = _per_frame(batch.column("frame_idx"), 1, np.int64)
    det = _per_frame(batch.column("detected"), 1, bool)
    score = _per_frame(batch.column("det_score"), 1, np.float32)
    lms = _per_frame(batch.column("landmarks"), 1434, np.float32)
    tfs = _per_frame(batch.column("transform"), 16, np.float32)
    rows = []
    for i in range(batch.num_rows):
        f = fidx[i] if fidx[i] is not None else np.zeros(0, np.int64)
        t = len(f)
        lm = lms[i]
        if lm is None or lm.shape[0] != t:
            lm = np.full((t, 1434), np.nan, np.float32)
        tf = tfs[i]
        rows.append({
            "frame_idx": f,
            "detected": det[i] if det[i] is not None and len(det[i]) == t else np.zeros(t, bool),
            "det_score": score[i] if score[i] is not None and len(score[i]) == t else None,
            "landmarks": lm.reshape(t, 478, 3),
            "transform": tf.reshape(t, 4, 4) if tf is not None and tf.shape[0] == t else None,
        })
    return rows


class FitStage(Stage):
    """Batched FLAME fitting of every face track in the batch (one solve for all of them)."""

    name = "fit"
    input_table = "faces"
    output_tables = ("flame",)
    uses_gpu = True

    @classmethod
    def check(cls, config: FitConfig) -> None:
        if config.model == "demo":
            return  # generated on first use
        from flameqa.flame.layer import resolve_model_path

        resolve_model_path(config.model)

    def __init__(self, config: FitConfig, ctx: StageContext) -> None:
        super().__init__(config, ctx)
        self.fitter = build_fitter(config, device=config.device if config.device != "auto" else resolve_device("auto", ctx.device))
        self._threads_before: int | None = None
        if self.fitter.device.type == "cpu" and config.cpu_threads is not None:
            import torch

            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(config.cpu_threads)
        self.model_id = self.fitter.model.model_id
        self.regressor = None
        if config.init.regressor:
            from flameqa.fit.init import load_regressor

            self.regressor = load_regressor(config.init.regressor, dict(config.init.regressor_args))
        self._stats: dict[str, float] = defaultdict(float)
        from flameqa.stages.pool import InnerPool

        # on CPU, a batch's clips are split over inner processes (one torch thread each, see
        # cpu_threads); on a GPU one process keeps the device busy with the whole batch
        self.inner = InnerPool(self, InnerPool.processes_of(ctx) if self.fitter.device.type == "cpu" else 1)

    def marker_extra(self) -> dict[str, Any]:
        """Device, model and the fitting time / frames since the previous marker (one per shard)."""
        stats = {k: round(v, 3) for k, v in self._stats.items()}
        self._stats.clear()
        return {"device": str(self.fitter.device), "model_id": self.model_id, **stats}

    def close(self) -> None:
        self.inner.close()
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        from flameqa.stages.pool import split_groups

        parts = self.inner.map("fit_batch", split_groups(batch, self.group_key, self.inner.processes))
        return {"flame": pa.concat_tables([p["flame"] for p in parts]) if parts else conform("flame", [])}

    def fit_batch(self, batch: pa.Table) -> dict[str, pa.Table]:
        """``flame`` rows of ``batch`` (whole clips), all its tracks in one batched solve."""
        from flameqa.fit.fitter import TrackData, jitter
        from flameqa.fit.init import TrackObservation

        n = batch.num_rows
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        col = {c: batch.column(c).to_pylist() for c in ("clip_id", "video_id", "track_id", "segment", "fps", "image_width", "image_height", "status", "error")}
        arrays = _batch_arrays(batch)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i in range(n):
            if col["status"][i] == "ok" and len(arrays[i]["frame_idx"]) > 0:
                groups[(col["clip_id"][i], int(col["track_id"][i]))].append(i)
            else:
                why = col["error"][i] or ("no frames" if col["status"][i] == "ok" else f"faces row status {col['status'][i]!r}")
                rows[i] = self._empty_row(col, arrays[i], i, "skipped" if col["status"][i] == "ok" else "failed", why)

        # runs of consecutive frames: (group, member rows, start offsets)
        units: list[tuple[tuple[str, int], list[int]]] = []
        tracks: list[TrackData] = []
        for key, members in groups.items():
            members.sort(key=lambda i: (int(col["segment"][i]), int(arrays[i]["frame_idx"][0])))
            run: list[int] = []
            for i in members:
                if run and int(arrays[i]["frame_idx"][0]) != int(arrays[run[-1]]["frame_idx"][-1]) + 1:
                    units.append((key, run))
                    run = []
                run.append(i)
            units.append((key, run))
        for key, run in units:
            cat = {k: np.concatenate([arrays[i][k] for i in run]) for k in ("frame_idx", "detected", "landmarks")}
            scores = [arrays[i]["det_score"] for i in run]
            tfs = [arrays[i]["transform"] for i in run]
            i0 = run[0]
            td = TrackData(
                landmarks=cat["landmarks"], detected=cat["detected"], width=int(col["image_width"][i0]), height=int(col["image_height"][i0]),
                fps=float(col["fps"][i0] or 25.0),
                det_score=None if any(s is None for s in scores) else np.concatenate(scores),
                transform=None if any(t is None for t in tfs) else np.concatenate(tfs),
                identity=key,
            )
            if self.regressor is not None:
                obs = TrackObservation(
                    clip_id=key[0], track_id=key[1], video_id=str(col["video_id"][i0]), frame_idx=cat["frame_idx"],
                    landmarks=cat["landmarks"], detected=cat["detected"], fps=td.fps, width=td.width, height=td.height, out=self.ctx.out,
                )
                try:
                    td.guess = self.regressor(obs)
                except Exception as e:  # noqa: BLE001 - a seed is optional; the fit goes on without it
                    log.warning("parameter regressor failed on clip %s track %s (%s: %s): fitting without its seed", key[0], key[1], type(e).__name__, e)
            tracks.append(td)

        import time

        t0 = time.perf_counter()
        fits = self.fitter.fit(tracks) if tracks else []
        self._stats["fit_seconds"] += time.perf_counter() - t0
        self._stats["frames"] += sum(t.n_frames for t in tracks)

        for (key, run), tr, fit in zip(units, tracks, fits):
            off = 0
            for i in run:
                t = len(arrays[i]["frame_idx"])
                sl = slice(off, off + t)
                off += t
                jr = None
                if fit.uv is not None:
                    jr, _, _ = jitter(fit.uv[sl], fit.obs[sl], fit.obs_ok[sl])
                rows[i] = self._row(col, arrays[i], i, fit, sl, jr)
        return {"flame": conform("flame", rows)}

    # ------------------------------------------------------------------------------------------
    def _base(self, col: dict[str, list], arr: dict[str, Any], i: int) -> dict[str, Any]:
        return {
            "clip_id": col["clip_id"][i], "video_id": col["video_id"][i], "track_id": int(col["track_id"][i]),
            "segment": int(col["segment"][i]), "model_id": self.model_id, "fps": float(col["fps"][i] or 0.0),
            "frame_idx": arr["frame_idx"].astype(np.int32).tolist(),
        }

    def _row(self, col, arr, i, fit, sl: slice, jr: float | None) -> dict[str, Any]:
        p = fit.params[sl]
        t = p.shape[0]
        ex = np.zeros((t, EXPR_COLUMNS), np.float32)
        ne = min(EXPR_COLUMNS, fit.expression.shape[1])
        ex[:, :ne] = fit.expression[sl][:, :ne]
        cam = json.loads(fit.camera.to_json())
        cam["neck"] = "fixed at zero (gauge-equivalent to global rotation for facial landmarks)"
        row = self._base(col, arr, i)
        row.update(
            valid=fit.valid[sl].tolist(),
            shape=fit.shape.astype(np.float32),
            expression=ex,
            jaw=fit.jaw[sl].astype(np.float32),
            neck=np.zeros((t, 3), np.float32),
            global_pose=fit.global_pose[sl].astype(np.float32),
            eyes=fit.eyes[sl].astype(np.float32),
            transl=fit.transl[sl].astype(np.float32),
            camera=json.dumps(cam, sort_keys=True),
            fit_rmse_px=fit.fit_rmse_px[sl].astype(np.float32),
            nme=fit.nme[sl].astype(np.float32),
            jitter_ratio=jr,
            converged=bool(fit.converged),
            iterations=int(fit.iterations),
            status=fit.status,
            error=fit.error,
        )
        row["shape"] = row["shape"].tolist()
        row["fit_rmse_px"] = row["fit_rmse_px"].tolist()
        row["nme"] = row["nme"].tolist()
        return row

    def _empty_row(self, col, arr, i, status: str, error: str) -> dict[str, Any]:
        t = len(arr["frame_idx"])
        nan = np.full((t, 3), np.nan, np.float32)
        row = self._base(col, arr, i)
        row.update(
            valid=[False] * t, shape=[], expression=np.full((t, EXPR_COLUMNS), np.nan, np.float32), jaw=nan, neck=nan.copy(),
            global_pose=nan.copy(), eyes=np.full((t, 6), np.nan, np.float32), transl=nan.copy(), camera=json.dumps({"model": "pinhole"}),
            fit_rmse_px=[float("nan")] * t, nme=[float("nan")] * t, jitter_ratio=None, converged=False, iterations=0,
            status=status, error=error,
        )
        return row

    def on_error(self, batch: pa.Table, error: str) -> dict[str, pa.Table] | None:
        n = batch.num_rows
        col = {c: batch.column(c).to_pylist() for c in ("clip_id", "video_id", "track_id", "segment", "fps", "image_width", "image_height", "status", "error")}
        arrays = _batch_arrays(batch)
        rows = [self._empty_row(col, arrays[i], i, "failed", error) for i in range(n)]
        return {"flame": conform("flame", rows)}
