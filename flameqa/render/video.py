"""Overlay videos: source frames with the fitted mesh, beside a fixed frontal view of the same
motion, captions from the transcript, and the original audio muxed in."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from flameqa.io import shards as sh
from flameqa.io.schema import column_to_numpy

log = logging.getLogger(__name__)

PANEL = 512


def _run_model_spec(run: Path) -> str:
    import yaml

    p = run / "config.yaml"
    if p.exists():
        return str((yaml.safe_load(p.read_text()) or {}).get("fit", {}).get("model", "demo"))
    return "demo"


def load_layer(model: str, n_shape: int):
    import torch

    from flameqa.flame import FlameLayer
    from flameqa.flame.io import load_model
    from flameqa.flame.layer import resolve_model_path

    data = load_model(resolve_model_path(model))
    return FlameLayer.from_file(model, n_shape=min(n_shape, data.n_shape_file), n_expr=min(100, data.n_expr_file), dtype=torch.float32)


def mesh_sequence(layer, shape: np.ndarray, params: dict[str, np.ndarray], frontal: bool = False) -> np.ndarray:
    """Vertices ``[T, V, 3]`` (model units) for per-frame params (``expression [T,100]``, ``jaw``,
    ``neck``, ``global_pose``, ``eyes``, ``transl``); ``frontal`` zeroes head rotation and translation."""
    import torch

    from flameqa.flame import compose_pose

    T = len(params["expression"])

    def t(key: str, n: int):
        v = params.get(key)
        return torch.zeros(T, n) if v is None else torch.from_numpy(np.array(v, np.float32)[:, :n])

    zeros3 = torch.zeros(T, 3)
    pose = compose_pose(zeros3 if frontal else t("global_pose", 3), t("neck", 3), t("jaw", 3), t("eyes", 6))
    with torch.no_grad():
        out = layer(
            shape=torch.as_tensor(np.asarray(shape, np.float32)[: layer.n_shape]).expand(T, -1),
            expression=t("expression", layer.n_expr),
            pose=pose,
            transl=zeros3 if frontal else t("transl", 3),
        )
    return out.vertices.numpy()


def _caption(img: np.ndarray, text: str) -> None:
    import cv2

    if not text:
        return
    h, w = img.shape[:2]
    scale = max(0.4, w / 900)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = max(4, (w - tw) // 2), h - 12
    cv2.rectangle(img, (x - 4, y - th - 6), (x + tw + 4, y + 6), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


class _Writer:
    """H.264 + AAC writer (PyAV): frames in, audio muxed at the end."""

    def __init__(self, dest: Path, w: int, h: int, fps: float, audio_rate: int | None = None) -> None:
        import av
        from fractions import Fraction

        dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = dest.with_name(f".{dest.name}.tmp.mp4")
        self.dest = dest
        self.c = av.open(str(self.tmp), "w")
        self.vs = self.c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.vs.width, self.vs.height, self.vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        self.vs.options = {"crf": "20", "preset": "veryfast"}
        # every stream must exist before the first packet is muxed
        self.sr = audio_rate
        self.a = None
        if audio_rate:
            self.a = self.c.add_stream("aac", rate=audio_rate)
            self.a.layout = "mono"

    def frame(self, img: np.ndarray) -> None:
        import av

        img = img[: self.vs.height, : self.vs.width]
        for p in self.vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            self.c.mux(p)

    def close(self, audio: np.ndarray | None = None) -> Path:
        import av

        for p in self.vs.encode():
            self.c.mux(p)
        a, sr = self.a, self.sr
        if a is not None and audio is not None and audio.size:
            for k in range(0, len(audio), 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, k : k + 1024], np.float32), format="fltp", layout="mono")
                fr.sample_rate = sr
                fr.pts = k
                for p in a.encode(fr):
                    self.c.mux(p)
            for p in a.encode():
                self.c.mux(p)
        self.c.close()
        os.replace(self.tmp, self.dest)
        return self.dest


def _select(run: Path, sample_id: str | None, clip_id: str | None):
    """Return (clip row, flame row, t0, t1) for a sample's answer span or a whole clip."""
    import pyarrow.compute as pc

    t0 = t1 = None
    track = None
    if sample_id is not None:
        s = sh.read_table(run, "samples", columns=["sample_id", "clip_id", "answer_speaker", "answer_start_s", "answer_end_s"])
        s = s.filter(pc.equal(s.column("sample_id"), sample_id)).to_pylist()
        if not s:
            raise KeyError(f"no sample {sample_id!r} in {run}/samples")
        clip_id, t0, t1 = s[0]["clip_id"], s[0]["answer_start_s"], s[0]["answer_end_s"]
        sf = sh.read_table(run, "speakers_faces")
        m = [r for r in sf.to_pylist() if r["clip_id"] == clip_id and r["speaker"] == s[0]["answer_speaker"]]
        track = m[0]["track_id"] if m else None
    if clip_id is None:
        raise ValueError("give a sample id or a clip id")
    clips = sh.read_table(run, "clips")
    clip = [r for r in clips.to_pylist() if r["clip_id"] == clip_id]
    if not clip:
        raise KeyError(f"no clip {clip_id!r} in {run}/clips")
    fl = sh.read_table(run, "flame")
    fl = fl.filter(pc.equal(fl.column("clip_id"), clip_id))
    rows = [i for i, r in enumerate(fl.select(["track_id", "status", "frame_idx"]).to_pylist()) if r["status"] == "ok" and (track is None or r["track_id"] == track)]
    if not rows:
        raise KeyError(f"no fitted face track for {sample_id or clip_id} in {run}/flame")
    clip = clip[0]
    fps = clip["fps"]
    # the segment that overlaps the span most (longest when rendering a whole clip)
    def overlap(i):
        fi = np.asarray(fl.column("frame_idx")[i].as_py())
        ts = clip["start_s"] + fi / fps
        return ((ts >= (t0 if t0 is not None else -1e9)) & (ts < (t1 if t1 is not None else 1e9))).sum()

    best = max(rows, key=overlap)
    return clip, fl.slice(best, 1), t0, t1


def iter_overlay(
    run: str | os.PathLike,
    *,
    sample_id: str | None = None,
    clip_id: str | None = None,
    mode: Literal["shaded", "wireframe"] = "shaded",
    every: int = 1,
) -> Iterator[tuple[float, np.ndarray, dict]]:
    """Yield ``(t, frame, info)`` composed overlay frames (every ``every``-th) of a sample's answer
    span or a whole clip: left the source frame with the fitted mesh (blue; red where the fit is not
    valid), right the same motion on a frontal mesh, transcript words as a caption. ``info`` holds
    the clip row, the span and the fps (for muxing audio)."""
    import cv2

    from flameqa.io.media import iter_frames
    from flameqa.render.raster import draw_mesh, frontal_view

    run = Path(run)
    clip, row, t0, t1 = _select(run, sample_id, clip_id)
    r = row.to_pylist()[0]
    params = {k: column_to_numpy(row.column(k), 0) for k in ("expression", "jaw", "neck", "global_pose", "eyes", "transl")}
    fidx = np.asarray(r["frame_idx"])
    valid = np.asarray(r["valid"], bool)
    fps = float(r["fps"])
    times = clip["start_s"] + fidx / fps
    sel = np.ones(len(fidx), bool) if t0 is None else (times >= t0) & (times < t1)
    layer = load_layer(_run_model_spec(run), len(r["shape"]))
    sub = {k: v[sel] for k, v in params.items()}
    verts = mesh_sequence(layer, np.asarray(r["shape"]), sub)
    front = mesh_sequence(layer, np.asarray(r["shape"]), sub, frontal=True)
    valid = valid[sel]
    faces = layer.faces.numpy()
    cam = json.loads(r["camera"])
    f, cx, cy = cam["focal_px"], cam["cx"], cam["cy"]
    words = sh.read_table(run, "words").to_pylist() if "words" in sh.list_table_dirs(run) else []
    words = [w for w in words if w["clip_id"] == clip["clip_id"]]
    center = front.reshape(-1, 3).mean(0) if len(front) else np.zeros(3)
    scale = 0.8 * PANEL / max(np.ptp(front[..., 0]), np.ptp(front[..., 1]), 1e-9) if len(front) else 1.0
    span = times[sel]
    start = float(span[0]) if len(span) else clip["start_s"]
    end = float(span[-1]) + 1 / fps if len(span) else clip["end_s"]
    by_time = {round(float(t), 4): k for k, t in enumerate(span)}
    info = {"clip": clip, "start_s": start, "end_s": end, "fps": fps}
    for n, (_, t, img) in enumerate(iter_frames(clip["path"], fps=fps, start_s=start, end_s=end, rotation=clip["rotation"] or 0)):
        if n % every:
            continue
        k = by_time.get(round(float(t), 4))
        h, w = img.shape[:2]
        s = PANEL / h
        left = cv2.resize(img, (int(round(w * s)) // 2 * 2, PANEL))
        if k is not None:
            v = verts[k]
            # OpenGL camera (x right, y up, looking down −z) → pixels; depth = −z
            depth = -v[:, 2]
            pix = np.stack([(cx + f * v[:, 0] / depth) * s, (cy - f * v[:, 1] / depth) * s, depth], -1)
            cam_v = np.stack([v[:, 0], -v[:, 1], -v[:, 2]], -1)
            colour = (170, 200, 255) if valid[k] else (255, 120, 120)
            left = draw_mesh(left, pix, faces, cam_verts=cam_v, mode=mode, color=colour, alpha=0.55)
            right = frontal_view(front[k], faces, PANEL, center=center, scale=scale)
        else:
            right = np.full((PANEL, PANEL, 3), 32, np.uint8)
        frame = np.concatenate([left, right], axis=1)
        _caption(frame, " ".join(wd["word"] for wd in words if wd["start_s"] - 0.6 <= t <= wd["end_s"] + 0.6))
        yield float(t), frame, info


def render(
    run: str | os.PathLike,
    *,
    dest: str | os.PathLike,
    sample_id: str | None = None,
    clip_id: str | None = None,
    motion: str | os.PathLike | None = None,
    audio: str | os.PathLike | None = None,
    mode: Literal["shaded", "wireframe"] = "shaded",
    png_every: int = 0,
) -> Path:
    """Render an overlay video to ``dest`` (H.264 + the clip's audio) and return its path.

    ``motion``: a motion parquet (flame-table columns, e.g. from ``flameqa predict``): rendered as
    the frontal mesh alone, with ``audio`` muxed when given. ``png_every`` > 0 also saves every n-th
    composed frame as PNG next to ``dest`` (for a quick look without a player).
    """
    import cv2

    from flameqa.io.media import read_wav

    run, dest = Path(run), Path(dest)
    if motion is not None:
        return render_motion(motion, dest, audio=audio, model=_run_model_spec(run) if run.exists() else "demo", png_every=png_every)
    writer = None
    info: dict = {}
    n = 0
    for _, frame, info in iter_overlay(run, sample_id=sample_id, clip_id=clip_id, mode=mode):
        if writer is None:
            writer = _Writer(dest, frame.shape[1], frame.shape[0], info["fps"], 16000 if info["clip"].get("audio_path") else None)
        writer.frame(frame)
        if png_every and n % png_every == 0:
            cv2.imwrite(str(dest.with_name(f"{dest.stem}_{n:04d}.png")), frame[:, :, ::-1])
        n += 1
    if writer is None:
        raise RuntimeError(f"no frames decoded for {sample_id or clip_id} in {run}")
    clip = info["clip"]
    audio_arr = read_wav(clip["audio_path"], info["start_s"], info["end_s"])[0] if clip.get("audio_path") else None
    out = writer.close(audio_arr)
    log.info("rendered %d frames to %s", n, out)
    return out


def sample_frames(run: str | os.PathLike, sample_id: str, n: int = 3) -> list[np.ndarray]:
    """``n`` evenly spaced composed overlay frames of a sample (for notebooks and reports)."""
    frames = [f for _, f, _ in iter_overlay(run, sample_id=sample_id, every=2)]
    if not frames:
        return []
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [frames[i] for i in idx]


def render_motion(motion: str | os.PathLike, dest: Path, audio: str | os.PathLike | None = None, model: str = "demo", png_every: int = 0) -> Path:
    """Frontal-view video of a motion parquet (one row, flame-table columns)."""
    import cv2
    import pyarrow.parquet as pq

    from flameqa.render.raster import frontal_view

    t = pq.read_table(motion)
    cols = {k: column_to_numpy(t.column(k), 0) for k in ("expression", "jaw", "neck") if k in t.column_names}
    fps = float(t.column("fps")[0].as_py()) if "fps" in t.column_names else 25.0
    shape = np.asarray(t.column("shape")[0].as_py()) if "shape" in t.column_names and t.column("shape")[0].is_valid else np.zeros(0)
    layer = load_layer(model, max(1, len(shape)))
    shape = np.pad(shape, (0, max(0, layer.n_shape - len(shape))))
    front = mesh_sequence(layer, shape, cols, frontal=True)
    faces = layer.faces.numpy()
    center = front.reshape(-1, 3).mean(0)
    scale = 0.8 * PANEL / max(np.ptp(front[..., 0]), np.ptp(front[..., 1]), 1e-9)
    w = _Writer(dest, PANEL, PANEL, fps, 16000 if audio is not None else None)
    for k in range(len(front)):
        img = frontal_view(front[k], faces, PANEL, center=center, scale=scale)
        w.frame(img)
        if png_every and k % png_every == 0:
            cv2.imwrite(str(dest.with_name(f"{dest.stem}_{k:04d}.png")), img[:, :, ::-1])
    a = None
    if audio is not None:
        from flameqa.io.media import read_wav

        a, _ = read_wav(audio)
    return w.close(a)
