"""The ingest stage: manifest rows → ``videos`` (one per input) and ``clips`` (one per shot).

Every input becomes a ``videos`` row: a file that is missing, unreadable, audio-only or empty gets
``status="failed"`` and an ``error`` that says why; the other inputs go on.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from flameqa.ingest.config import IngestConfig
from flameqa.io.media import MediaError, extract_audio, probe
from flameqa.ingest.shots import detect_shots
from flameqa.security import contained
from flameqa.stages.base import Stage, StageContext

log = logging.getLogger(__name__)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class IngestStage(Stage):
    name = "ingest"
    input_table = None
    output_tables = ("videos", "clips")
    group_key = "row"

    def __init__(self, config: IngestConfig, ctx: StageContext) -> None:
        super().__init__(config, ctx)
        self.config: IngestConfig = config

    # -- one input -------------------------------------------------------------------------
    def _local_path(self, uri: str, video_id: str) -> Path:
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
        if scheme not in self.config.allowed_schemes:
            raise MediaError(
                f"uri scheme {scheme!r} is not allowed (ingest.allowed_schemes={list(self.config.allowed_schemes)}); "
                "add it to the config to fetch remote inputs"
            )
        if scheme == "file":
            return Path(uri[7:] if uri.startswith("file://") else uri)
        import fsspec  # remote inputs are copied under OUT/media/remote through fsspec

        dest = contained(self.ctx.out, Path("media") / "remote" / f"{video_id}{Path(uri).suffix[:8]}")
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name("." + dest.name + ".tmp")
            with fsspec.open(uri, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            tmp.replace(dest)
        return dest

    def ingest_one(self, r: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        cfg = self.config
        video = {k: r.get(k) for k in ("video_id", "uri", "license", "source")}
        video.update(status="failed", error=None, flags=[])
        if r.get("error"):
            video["error"] = r["error"]
            return video, []
        try:
            path = self._local_path(r["uri"], r["video_id"])
            video["path"] = str(path)
            if not path.exists():
                raise MediaError(f"file not found: {path}")
            if not path.is_file():
                raise MediaError(f"not a regular file: {path}")
            if path.stat().st_size == 0:
                raise MediaError(f"zero-byte file: {path}")
            if cfg.hash_files:
                video["sha256"] = sha256_file(path)
            if r.get("duplicate_of"):
                video.update(status="duplicate", error=f"same file as video {r['duplicate_of']!r} (repeated uri); not processed twice")
                return video, []
            p = probe(path)
            video.update(
                duration_s=p.duration_s, fps=p.fps, vfr=p.vfr, width=p.width, height=p.height,
                rotation=p.rotation, has_audio=p.has_audio, has_video=p.has_video, flags=list(p.flags),
            )
            if not p.has_video:
                raise MediaError("no video stream (audio-only input)")
            if not p.width or not p.height:
                raise MediaError(f"video stream has no frame size ({p.width}x{p.height})")
            if cfg.min_source_fps and p.fps and p.fps < cfg.min_source_fps:
                span = f" over {p.duration_s / 3600:.1f} h" if p.duration_s else ""
                raise MediaError(
                    f"{p.fps:.3g} frames per second on average{span}: below ingest.min_source_fps={cfg.min_source_fps:g} "
                    "(too sparse for per-frame face motion)"
                )
            audio_path = None
            if p.has_audio:
                dest = contained(self.ctx.out, Path("media") / "audio" / f"{r['video_id']}.wav")
                try:
                    dur = extract_audio(path, dest, cfg.sample_rate)
                    audio_path = str(dest)
                    if dur <= 0:
                        video["flags"].append("empty_audio")
                except MediaError as e:
                    video["flags"].append("audio_error")
                    log.warning("%s: %s", r["video_id"], e)
            video["audio_path"] = audio_path
            shots, n_frames = detect_shots(path, fps=cfg.fps, rotation=p.rotation, threshold=cfg.shot_threshold)
            if n_frames == 0:
                raise MediaError("no decodable video frames (corrupt, truncated or empty stream)")
            decoded_s = n_frames / cfg.fps
            if p.duration_s and decoded_s < 0.8 * p.duration_s - 1.0:
                video["flags"].append("truncated")
            video["duration_s"] = video["duration_s"] or decoded_s
            clips = []
            for k, (a, b) in enumerate(shots):
                if b - a < cfg.min_clip_s:
                    continue
                clips.append(
                    dict(
                        clip_id=f"{r['video_id']}.c{k:03d}", video_id=r["video_id"], path=str(path), audio_path=audio_path,
                        start_s=a, end_s=b, fps=cfg.fps, width=p.width, height=p.height, rotation=p.rotation,
                        license=r.get("license"), source=r.get("source"), status="ok", error=None,
                    )
                )
            if not clips:
                video["flags"].append("no_usable_clip")
            video["status"] = "ok"
            return video, clips
        except (MediaError, OSError, ValueError) as e:
            video["error"] = str(e)
            return video, []

    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        videos, clips = [], []
        for r in batch.to_pylist():
            v, c = self.ingest_one(r)
            videos.append(v)
            clips += c
        from flameqa.io.schema import conform

        return {"videos": conform("videos", videos), "clips": conform("clips", clips)}

    def on_error(self, batch: pa.Table, error: str) -> dict[str, pa.Table]:
        from flameqa.io.schema import conform

        rows = [dict(video_id=r["video_id"], uri=r["uri"], license=r.get("license"), source=r.get("source"), status="failed", error=error, flags=[]) for r in batch.to_pylist()]
        return {"videos": conform("videos", rows), "clips": conform("clips", [])}
