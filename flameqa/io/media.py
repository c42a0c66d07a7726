"""Media probing and streaming decode with PyAV (FFmpeg libraries inside the wheel).

Frames are streamed, never held whole: memory does not grow with video length.
"""

from __future__ import annotations

import glob
import logging
import os
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from flameqa.io.atomic import create_temp

log = logging.getLogger(__name__)


class MediaError(Exception):
    """A media file that cannot be used; the message says why."""


@dataclass
class Probe:
    duration_s: float | None = None
    fps: float | None = None
    vfr: bool = False
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    has_video: bool = False
    has_audio: bool = False
    audio_rate: int | None = None
    audio_channels: int | None = None
    n_frames: int | None = None
    flags: list[str] = field(default_factory=list)


def _first_frame_rotation(container, vs) -> int:
    """Display rotation (counter-clockwise degrees, multiple of 90) read off the first decoded frame.

    PyAV exposes the container's display matrix as ``VideoFrame.rotation``; phone videos store
    upright-by-metadata frames this way.
    """
    try:
        for frame in container.decode(vs):
            return int(round(float(frame.rotation or 0) / 90.0)) * 90 % 360
    except Exception:  # noqa: BLE001 - a broken first frame is reported by the decode later
        return 0
    return 0


def probe(path: str | os.PathLike, scan_frames: int = 120) -> Probe:
    """Read container/stream facts; scans the first ``scan_frames`` packets to detect VFR."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"cannot open {path}: {e}") from None
    with container:
        p = Probe()
        if container.duration is not None:
            p.duration_s = container.duration / 1_000_000
        vs = container.streams.video[0] if container.streams.video else None
        aus = container.streams.audio[0] if container.streams.audio else None
        if aus is not None:
            p.has_audio = True
            p.audio_rate = aus.codec_context.sample_rate or aus.rate
            p.audio_channels = aus.codec_context.channels
        if vs is not None:
            p.has_video = True
            p.width, p.height = vs.codec_context.width, vs.codec_context.height
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            p.fps = float(rate) if rate else None
            if vs.duration is not None and vs.time_base is not None:
                p.duration_s = max(p.duration_s or 0.0, float(vs.duration * vs.time_base))
            p.n_frames = vs.frames or None
            # VFR: packet durations/timestamps of the first packets vary
            pts = []
            try:
                for i, pkt in enumerate(container.demux(vs)):
                    if pkt.pts is not None:
                        pts.append(float(pkt.pts * vs.time_base))
                    if i >= scan_frames:
                        break
            except av.error.FFmpegError:
                p.flags.append("demux_error")
            container.seek(0)
            p.rotation = _first_frame_rotation(container, vs)
            if p.rotation in (90, 270):
                p.width, p.height = p.height, p.width
            if len(pts) >= 8:
                # packets come in decode order (B-frames reorder): sort, and drop the tail whose
                # successors may not have been read yet
                d = np.diff(np.sort(np.asarray(pts))[: max(4, int(len(pts) * 0.9))])
                d = d[d > 0]
                if d.size >= 3:
                    off = np.abs(d - np.median(d)) > 0.25 * np.median(d)
                    if off.mean() > 0.05:
                        p.vfr = True
                        p.flags.append("vfr")
        if p.rotation:
            p.flags.append(f"rotated_{p.rotation}")
        if not p.has_audio:
            p.flags.append("no_audio")
        return p


def upright(img: np.ndarray, rotation: int) -> np.ndarray:
    # display rotation is counter-clockwise degrees; np.rot90 turns counter-clockwise too
    # (checked against ffmpeg's autorotate output in tests/ingest)
    k = (rotation % 360) // 90
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


#: 8-bit formats whose first plane is luma; the ``yuvj`` ones use the full 0-255 range
_LUMA_FORMATS = {"yuv420p", "yuv422p", "yuv444p", "yuv440p", "yuv411p", "yuv410p", "nv12", "nv21", "yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}


def _luma(frame, size: tuple[int, int] | None) -> np.ndarray:
    """Full-range luma of a decoded frame, area-averaged to ``size`` (W, H): ``H×W`` uint8.

    Reads the decoder's Y plane in place (no swscale). Limited-range video (Y in 16-235) is
    stretched to 0-255, as FFmpeg's own gray conversion does. Other pixel formats take swscale.
    """
    name = frame.format.name
    if name not in _LUMA_FORMATS:
        kw = {"format": "gray"}
        if size is not None:
            kw.update(width=int(size[0]), height=int(size[1]))
        return np.ascontiguousarray(frame.to_ndarray(**kw))
    import cv2

    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
    if size is not None and (y.shape[1], y.shape[0]) != tuple(size):
        y = cv2.resize(y, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA)
    full = name.startswith("yuvj") or getattr(frame, "color_range", 0) == 2  # AVCOL_RANGE_JPEG
    if full:
        return np.array(y, np.uint8, copy=True)  # own the memory: the plane is the decoder's
    return np.clip((y.astype(np.float32) - 16.0) * (255.0 / 219.0) + 0.5, 0, 255).astype(np.uint8)


def iter_frames(
    path: str | os.PathLike,
    fps: float = 25.0,
    start_s: float = 0.0,
    end_s: float | None = None,
    rotation: int = 0,
    size: tuple[int, int] | None = None,
    fmt: str = "rgb24",
    skip_loop_filter: bool = False,
    threads: int = 0,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Stream frames resampled to ``fps`` within ``[start_s, end_s)``.

    Yields ``(idx, t, image)``: idx = frame number at the target rate counted from ``start_s``,
    t = target time in seconds from the video start, image = contiguous upright ``H×W×3`` uint8
    (``size=(W, H)`` rescales in FFmpeg's swscale before conversion). For each target time the most
    recent decoded frame at or before it is used (so VFR input comes out at a constant rate).

    ``fmt="luma"``: ``H×W`` uint8 brightness (0-255) averaged over the pixels of the decoder's own
    luma plane (OpenCV ``INTER_AREA``), no swscale: for small analysis frames (shot detection at
    64×36) it costs a fraction of a swscale conversion of a 720p frame (~0.05 vs ~0.7 ms).
    ``skip_loop_filter``: the decoder skips its in-loop deblocking filter: ~20 % less decode CPU for
    H.264, pictures slightly blockier (a mean |Δ| of 0.5/255 at 64×36 over a 30 s GOP run).
    ``threads``: decoder threads (0: FFmpeg's choice, one per core). Processes that each decode
    their own video on a many-core node set a small number, so N processes do not run N × cores
    decoder threads.
    """
    for _, idx, t, img in iter_windows(path, [(start_s, end_s)], fps, rotation, size, fmt, skip_loop_filter, threads):
        yield idx, t, img


def iter_windows(
    path: str | os.PathLike,
    windows: Sequence[tuple[float, float | None]],
    fps: float = 25.0,
    rotation: int = 0,
    size: tuple[int, int] | None = None,
    fmt: str = "rgb24",
    skip_loop_filter: bool = False,
    threads: int = 0,
) -> Iterator[tuple[int, int, float, np.ndarray]]:
    """:func:`iter_frames` of several ``[start_s, end_s)`` windows of one video in one decoding pass.

    Yields ``(k, idx, t, image)``: the window's index in ``windows``, then what :func:`iter_frames`
    would yield for that window alone, frame for frame: a target time shows the latest decoded frame
    at or before it, whichever window asked for the decoded frames around it. Windows must be
    sorted and not overlap; gaps between them are decoded through, not sought over (meant for
    shots of one video that follow each other: one seek for the run instead of one per shot, each
    of which decodes again from the keyframe before it). Only the last window may be open-ended.
    """
    import av

    if not windows:
        return
    for (s0, e0), (s1, _) in zip(windows, windows[1:]):
        if e0 is None or s1 < e0 - 1e-6 or s1 < s0:
            raise ValueError(f"windows must be sorted and not overlap: {(s0, e0)} then starts at {s1}")
    step = 1.0 / fps
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(f"cannot open {path}: {e}") from None
    with container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        if threads > 0:
            vs.thread_count = threads
        if skip_loop_filter:
            vs.codec_context.options = {**vs.codec_context.options, "skip_loop_filter": "all"}
        k = 0
        start_s, end_s = windows[0]
        if start_s > 1.0:
            try:
                container.seek(int(max(0.0, start_s - 1.0) / vs.time_base), stream=vs, backward=True)
            except av.error.FFmpegError as e:
                # some containers refuse to seek (EPERM from an MPEG stream remuxed into MP4):
                # decoding from the start gives the same frames, only slower
                log.debug("seek refused in %s (%s): decoding from the start", path, e)
        idx = 0
        target = start_s
        prev = None  # (time, frame) of the latest decoded frame
        last_dt = 0.0
        eps = 1e-6
        kw = {"format": fmt}
        if size is not None:
            kw.update(width=int(size[0]), height=int(size[1]))

        def emit(frame):
            if fmt == "luma":
                return upright(_luma(frame, size), rotation)
            return np.ascontiguousarray(upright(frame.to_ndarray(**kw), rotation))

        def settle() -> bool:
            """Move past finished windows; False when none is left."""
            nonlocal k, start_s, end_s, idx, target
            while end_s is not None and target >= end_s - eps:
                k += 1
                if k == len(windows):
                    return False
                start_s, end_s = windows[k]
                idx, target = 0, start_s
            return True

        try:
            for frame in container.decode(vs):
                if frame.pts is None:
                    continue
                t = float(frame.pts * vs.time_base)
                if not settle():
                    break
                # every target time before this frame is shown by the previous frame (or, before the
                # first decoded frame, by this one)
                while target < t - eps:
                    yield k, idx, round(target, 6), emit(prev[1] if prev is not None else frame)
                    idx += 1
                    target = start_s + idx * step
                    if not settle():
                        return
                last_dt = t - prev[0] if prev is not None else last_dt
                prev = (t, frame)
            if prev is not None:  # the last frame is shown for the last observed frame interval
                dur = last_dt if last_dt and last_dt > 0 else step
                while settle() and target < prev[0] + dur - eps:
                    yield k, idx, round(target, 6), emit(prev[1])
                    idx += 1
                    target = start_s + idx * step
        except av.error.FFmpegError as e:
            log.warning("decode stopped early in %s at %.2fs: %s", path, target, e)


def mono_resampler(sample_rate: int):
    """A PyAV resampler to ``sample_rate`` planar float that keeps the channels (see :func:`mono_samples`)."""
    import av

    return av.AudioResampler(format="fltp", layout=None, rate=sample_rate)


def mono_samples(frame) -> np.ndarray:
    """float32 mono samples ``[n]`` of a planar frame from :func:`mono_resampler`: channels averaged.

    FFmpeg's own stereo→mono downmix adds the channels at −3 dB each, so a recording with equal
    channels comes out 1.41× louder than it is (and clips in 16-bit); the mean keeps its level,
    the same as the WAV reader's.
    """
    x = frame.to_ndarray()  # [channels, n]
    return (x.mean(axis=0) if x.ndim == 2 and x.shape[0] > 1 else x.reshape(-1)).astype(np.float32, copy=False)


def extract_audio(path: str | os.PathLike, dest: str | os.PathLike, sample_rate: int = 16000) -> float:
    """Decode the first audio stream to mono 16-bit PCM wav at ``sample_rate`` (temp + rename).

    Returns the audio duration in seconds. Streams: memory does not grow with length.
    """
    import av

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a killed earlier attempt (one writer per destination)
    # not mkstemp: its 0600 would survive the rename and make the audio owner-only
    fd, tmp = create_temp(dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)  # wave reopens the path; truncating an existing file keeps its mode
    n = 0
    try:
        with av.open(str(path)) as container, wave.open(tmp, "wb") as w:
            if not container.streams.audio:
                raise MediaError(f"{path} has no audio stream")
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            a = container.streams.audio[0]
            res = mono_resampler(sample_rate)

            def write(frames):
                nonlocal n
                for rf in frames:
                    buf = mono_samples(rf)
                    n += buf.size
                    w.writeframes(np.clip(np.round(buf * 32768.0), -32768, 32767).astype("<i2").tobytes())
            try:
                for frame in container.decode(a):
                    write(res.resample(frame))
            except av.error.FFmpegError as e:
                log.warning("audio decode stopped early in %s: %s", path, e)
            write(res.resample(None))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n / sample_rate


def read_wav(path: str | os.PathLike, start_s: float = 0.0, end_s: float | None = None) -> tuple[np.ndarray, int]:
    """Read a span of a wav file as float32 mono in [-1, 1]; returns (samples [N], sample_rate)."""
    import soundfile as sf

    info = sf.info(str(path))
    start = int(round(start_s * info.samplerate))
    stop = None if end_s is None else int(round(end_s * info.samplerate))
    x, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    return x.mean(axis=1), sr
