"""Reliability suite fixtures: one clean demo run shared by the session, the bad-input corpus, the tally.

The bad-input corpus (issue 10 names ``tests/data/bad/``) is generated at test time under
``tmp_path / "bad"``: nothing binary is committed, and each test gets fresh files. Media kinds are
cut from a real GRID clip when ../shared/data is present (so faces and fits run on them), else from
a synthetic clip.

Counts (bad-input kinds tried, crashes, rows lost, kill/resume runs) are gathered in ``TALLY`` and
printed at the end of the session, also under ``-q``. Tests marked ``slow`` run only when the
marker expression selects them (``make soak`` = ``pytest -m slow``).
"""

from __future__ import annotations

import json
import os
import pickle
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import GRID
from tests.reliability.helpers import base_env, pipeline_args, run_flameqa, snapshot_code

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------
# the tally printed at the end of the session

TALLY: dict[str, Any] = defaultdict(int)
TALLY_NOTES: list[str] = []


def tally(**counts: int) -> None:
    for k, v in counts.items():
        TALLY[k] += v


FLOAT_DIFFS: dict[str, float] = {}


def note_float_diffs(diffs: dict[str, float]) -> None:
    """Keep the largest float difference seen per table (0: bit-exact) for the summary."""
    for t, d in diffs.items():
        if d == d:  # not NaN
            FLOAT_DIFFS[t] = max(FLOAT_DIFFS.get(t, 0.0), d)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook
    if not TALLY and not TALLY_NOTES and not FLOAT_DIFFS:
        return
    tr = terminalreporter
    tr.section("reliability tally")
    order = ["bad-input kinds tried", "bad inputs handled", "kill/resume runs", "crashes", "rows lost", "duplicate rows", "unreadable visible shards", "soak iterations"]
    for k in order + sorted(set(TALLY) - set(order)):
        if k in TALLY:
            tr.write_line(f"{k:28s} {TALLY[k]}")
    if FLOAT_DIFFS:
        exact = sorted(t for t, d in FLOAT_DIFFS.items() if d == 0.0)
        off = {t: f"{d:.2g}" for t, d in sorted(FLOAT_DIFFS.items()) if d}
        tr.write_line(f"resumed vs clean: bit-exact {exact}; floats within tolerance {off}")
    for n in TALLY_NOTES:
        tr.write_line(n)


def pytest_collection_modifyitems(config, items):
    """Slow tests of this folder run only when ``-m`` selects them (``make soak``)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak/long test: run with -m slow (make soak)")
    for item in items:
        if HERE in Path(str(item.path)).parents and item.get_closest_marker("slow"):
            item.add_marker(skip)


# ---------------------------------------------------------------------------------------------
# one clean demo run for the session (every crash test compares against it)


@dataclass
class CleanRun:
    out: Path
    manifest: Path
    log: str
    seconds: float


@pytest.fixture(scope="session", autouse=True)
def code_snapshot(tmp_path_factory) -> Path:
    """Every CLI run of the session uses the code as it was when the session started."""
    return snapshot_code(tmp_path_factory.mktemp("code"))


@pytest.fixture(scope="session")
def demo_manifest(tmp_path_factory) -> Path:
    from flameqa.demo import make_inputs

    if not GRID.exists():
        pytest.skip(f"the demo pipeline needs the GRID clips in {GRID}")
    manifest, _ = make_inputs(tmp_path_factory.mktemp("demo-inputs"))
    return manifest


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory, demo_manifest) -> CleanRun:
    """``flameqa run pipelines/demo.yaml`` once, uninterrupted, two shards per stage, HF_TOKEN planted."""
    import time

    out = tmp_path_factory.mktemp("clean") / "run"
    t0 = time.perf_counter()
    r = run_flameqa(pipeline_args(demo_manifest, out), env=base_env(FLAMEQA_LOG="INFO"))
    assert r.returncode == 0, r.describe()
    return CleanRun(out=out, manifest=demo_manifest, log=r.output, seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# the bad-input corpus


@dataclass
class Bad:
    """One kind of bad input and what must happen to it."""

    kind: str
    area: str
    """video | audio | path | manifest | config | model"""
    expect: str
    """ok | failed | duplicate | failed_or_flagged | any (no crash, one row) | error (clear message)"""
    reason: str = ""
    """Substring of the row's ``error`` (or flags) / the error message that names the problem."""
    rows: list[dict] = field(default_factory=list)
    """Rows this kind adds to the corpus manifest (video, audio, path and manifest kinds)."""
    path: Path | None = None
    """The file (config and model kinds; extra manifest files given as a second --input)."""


@dataclass
class Corpus:
    root: Path
    manifest: Path
    extra_inputs: list[Path]
    kinds: list[Bad]
    row_kinds: list[str]
    """Kind of each manifest row, in the order ``read_manifest([manifest, *extra_inputs])`` returns them."""

    def by_area(self, *areas: str) -> list[Bad]:
        return [b for b in self.kinds if b.area in areas]


def _source_clip() -> tuple[list[np.ndarray], np.ndarray, float]:
    """Frames (RGB, 25 fps), 16 kHz mono audio and fps of a real talking-head clip (or a synthetic one)."""
    from flameqa.io.media import extract_audio, iter_frames, read_wav

    src = GRID / "bbaf2n.mpg"
    if src.exists():
        import tempfile

        frames = [f for _, _, f in iter_frames(src, fps=25.0, size=(180, 144))]
        with tempfile.TemporaryDirectory() as tmp:
            extract_audio(src, Path(tmp) / "a.wav", 16000)
            audio, _ = read_wav(Path(tmp) / "a.wav")
        return frames, audio.astype(np.float32), 25.0
    h, w = 144, 180
    yy, xx = np.mgrid[0:h, 0:w]
    frames = [np.stack([(xx * 2 + i * 3) % 256, (yy * 2) % 256, np.full_like(xx, 60)], -1).astype(np.uint8) for i in range(75)]
    t = np.arange(48000) / 16000
    return frames, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 25.0


def encode(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: float = 25.0,
    size: tuple[int, int] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    container: str | None = None,
    rotation: int = 0,
    frame_times: list[float] | None = None,
    audio_codec: str = "aac",
) -> Path:
    """Encode RGB frames (+ mono float audio) with PyAV; ``frame_times`` (s) gives explicit pts (VFR/sparse)."""
    import av

    h0, w0 = frames[0].shape[:2]
    w, h = size or (w0, h0)
    with av.open(str(path), "w", format=container) as c:
        vs = c.add_stream(codec, rate=int(round(fps)))
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if frame_times is not None:
            vs.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            vs.set_display_rotation(rotation)
        ast = None
        if audio is not None:
            ast = c.add_stream(audio_codec, rate=sample_rate)
            ast.layout = "mono"
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if (w, h) != (w0, h0):
                f = f.reformat(width=w, height=h)
            if frame_times is not None:
                f.pts = int(round(frame_times[i] * 1000))
                f.time_base = Fraction(1, 1000)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if ast is not None:
            fmt = "fltp" if audio_codec == "aac" else "s16"
            data = audio[None, :] if fmt == "fltp" else (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :]
            for k in range(0, data.shape[1], 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, k : k + 1024]), format=fmt, layout="mono")
                fr.sample_rate = sample_rate
                fr.pts = k
                for p in ast.encode(fr):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)
    return path


def _resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr_from, sr_to)
    return resample_poly(x, sr_to // g, sr_from // g).astype(np.float32)


def _zero_size_mkv(path: Path) -> Path:
    """A Matroska FFV1 stream whose header says 0×0 (FFV1 keeps the frame size only in the container)."""
    import av

    tmp = path.with_name(path.name + ".src.mkv")
    with av.open(str(tmp), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    b = tmp.read_bytes()
    # EBML PixelWidth (0xB0) = 64, PixelHeight (0xBA) = 48, each one byte long → 0
    assert b.count(b"\xb0\x81\x40") == 1 and b.count(b"\xba\x81\x30") == 1
    path.write_bytes(b.replace(b"\xb0\x81\x40", b"\xb0\x81\x00").replace(b"\xba\x81\x30", b"\xba\x81\x00"))
    tmp.unlink()
    return path


def _wav(path: Path, x: np.ndarray, sr: int) -> Path:
    import soundfile as sf

    sf.write(str(path), x, sr, subtype="PCM_16", format="WAV")
    return path


class _Evil:
    """Pickles to ``os.system(...)``: loading it with plain pickle would create the flag file."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def _model_files(bad: Path) -> list[Bad]:
    """FLAME-format model files that must be refused with a clear error (nothing executed)."""
    from flameqa.flame.demo_head import ensure_demo_head

    with np.load(ensure_demo_head(), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    numeric = {k: v for k, v in arrays.items() if v.dtype.kind in "fiub"}
    kinds = []

    wrong = dict(numeric, v_template=numeric["v_template"][:, :2].copy())  # [V, 2]: a wrong shape
    p = bad / "model" / "wrong_shapes.pkl"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(pickle.dumps(wrong, protocol=2))
    kinds.append(Bad("model_wrong_shapes", "model", "error", "v_template", path=p))

    full = pickle.dumps(numeric, protocol=2)
    p = bad / "model" / "truncated.pkl"
    p.write_bytes(full[: len(full) // 3])
    kinds.append(Bad("model_truncated_pickle", "model", "error", "truncated.pkl", path=p))

    flag = bad / "model" / "PWNED"
    p = bad / "model" / "malicious.pkl"
    p.write_bytes(pickle.dumps({"v_template": _Evil(flag)}, protocol=2))
    kinds.append(Bad("model_malicious_pickle", "model", "error", "refus", path=p))

    p = bad / "model" / "object_array.npz"
    np.savez(p, v_template=np.array([{"a": 1}], dtype=object))
    kinds.append(Bad("model_npz_object_array", "model", "error", "object_array.npz", path=p))

    p = bad / "model" / "not_a_model.pkl"
    p.write_text("this is not a pickle\n")
    kinds.append(Bad("model_text_file", "model", "error", "not_a_model.pkl", path=p))

    kinds.append(Bad("model_missing", "model", "error", "missing_model.pkl", path=bad / "model" / "missing_model.pkl"))
    return kinds


def _manifest_files(bad: Path) -> list[Bad]:
    """Whole manifests that cannot be read: one clear error before any work."""
    d = bad / "manifests"
    d.mkdir(parents=True, exist_ok=True)
    (d / "latin1.jsonl").write_bytes('{"uri": "caf\xe9.mp4"}\n'.encode("latin-1"))
    (d / "corrupt.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)
    (d / "list.txt").write_text("a.mp4\n")
    (d / "zero.csv").write_bytes(b"")
    return [
        Bad("manifest_file_missing", "manifest_file", "error", "does not exist", path=d / "absent.jsonl"),
        Bad("manifest_not_utf8", "manifest_file", "error", "cannot be read", path=d / "latin1.jsonl"),
        Bad("manifest_corrupt_parquet", "manifest_file", "error", "cannot be read", path=d / "corrupt.parquet"),
        Bad("manifest_unknown_type", "manifest_file", "failed_row", "cannot open", path=d / "list.txt"),  # taken as a video uri
        Bad("manifest_zero_byte", "manifest_file", "empty", "", path=d / "zero.csv"),
    ]


def _config_files(bad: Path) -> list[Bad]:
    d = bad / "config"
    d.mkdir(parents=True, exist_ok=True)
    specs = [
        ("config_unknown_keys", "fit:\n  devise: cpu\nspeech:\n  asr_modle: tiny\n", "fit.devise"),
        ("config_bad_choice", "runner:\n  executor: slurm\n", "runner.executor"),
        ("config_wrong_type", "runner:\n  workers: many\n", "runner.workers"),
        ("config_not_mapping", "- ingest\n- speech\n", "must be a mapping"),
        ("config_yaml_syntax", "ingest: [fps: 25\n", "not valid YAML"),
        ("config_python_tag", "ingest: !!python/object/apply:os.system ['touch PWNED_YAML']\n", "not valid YAML"),
        ("config_unknown_stage", "stages: [ingest, transcode]\n", "stages"),
    ]
    kinds = []
    for kind, text, reason in specs:
        p = d / f"{kind}.yaml"
        p.write_text(text)
        kinds.append(Bad(kind, "config", "error", reason, path=p))
    return kinds


def make_corpus(bad: Path) -> Corpus:
    """Write every kind of bad input under ``bad`` and one JSONL manifest (+ extra manifests) naming them."""
    bad.mkdir(parents=True, exist_ok=True)
    full_frames, full_audio, fps = _source_clip()
    # most kinds are 1.4 s cut from the clip (the corpus runs through every stage: keep it short)
    frames, audio = full_frames[:35], full_audio[:22400]
    media = bad / "media"
    media.mkdir()
    kinds: list[Bad] = []

    def add(kind: str, area: str, expect: str, reason: str = "", rows: list[dict] | None = None, path: Path | None = None) -> None:
        kinds.append(Bad(kind, area, expect, reason, rows=rows or [], path=path))

    def row(kind: str, uri: Any, **kw: Any) -> list[dict]:
        return [{"uri": uri if not isinstance(uri, Path) else str(uri), "video_id": kind, "license": "CC-BY-4.0", **kw}]

    def fresh(name: str, folder: Path = media) -> Path:
        """A short well-formed clip of its own (inputs that must succeed never share a file)."""
        return encode(folder / name, frames[:25], audio=audio[:16000])

    # a well-formed control input: the other rows must not stop it
    good = encode(media / "good.mp4", full_frames, audio=full_audio)
    add("control_good", "control", "ok", rows=row("control_good", good))

    # -- video containers and streams
    full = good.read_bytes()
    p = media / "truncated.mp4"
    p.write_bytes(full[: int(len(full) * 0.4)])
    add("truncated_container", "video", "failed_or_flagged", "", row("truncated_container", p))
    rot = np.random.default_rng(0)
    p = media / "garbage.mp4"
    p.write_bytes(rot.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    add("corrupt_garbage", "video", "failed", "cannot open", row("corrupt_garbage", p))
    b = bytearray(encode(media / "bitrot_src.mp4", frames, audio=audio, container="mp4").read_bytes())
    a0, a1 = len(b) // 3, len(b) // 3 + len(b) // 10
    b[a0:a1] = rot.integers(0, 256, a1 - a0, dtype=np.uint8).tobytes()
    p = media / "bitrot.mp4"
    p.write_bytes(bytes(b))
    add("corrupt_midstream", "video", "any", "", row("corrupt_midstream", p))
    p = encode(media / "matroska_named.mp4", frames, audio=audio, container="matroska")
    add("wrong_extension_mkv_as_mp4", "video", "ok", "", row("wrong_extension_mkv_as_mp4", p))
    p = media / "notes.mp4"
    p.write_text("not a video, just text\n" * 50)
    add("wrong_extension_text_as_mp4", "video", "failed", "cannot open", row("wrong_extension_text_as_mp4", p))
    p = _wav(media / "speech_named.mp4", audio, 16000)
    add("wrong_extension_wav_as_mp4", "video", "failed", "audio-only", row("wrong_extension_wav_as_mp4", p))
    p = media / "zero.mp4"
    p.write_bytes(b"")
    add("zero_byte_file", "video", "failed", "zero-byte", row("zero_byte_file", p))
    p = _zero_size_mkv(media / "zero_size.mkv")
    add("zero_size_frames", "video", "failed", "no frame size", row("zero_size_frames", p))
    p = encode(media / "odd_size.avi", frames, size=(161, 121), audio=audio, codec="mpeg4", container="avi")
    add("odd_size_frames_420", "video", "ok", "", row("odd_size_frames_420", p))
    p = encode(media / "odd_size_444.mp4", frames, size=(179, 143), audio=audio, pix_fmt="yuv444p")
    add("odd_size_frames_444", "video", "ok", "", row("odd_size_frames_444", p))
    p = encode(media / "tiny.mp4", frames[:25], size=(2, 2), pix_fmt="yuv444p", audio=audio[:16000])
    add("tiny_2x2_frames", "video", "ok", "", row("tiny_2x2_frames", p))
    p = encode(media / "one_frame.mp4", frames[:1], audio=audio[:640])
    add("one_frame_video", "video", "ok", "", row("one_frame_video", p))
    # ten hours, one 16×16 frame a minute, no audio: 600 frames to encode
    tiny = [np.full((16, 16, 3), 40 + (i % 7) * 20, np.uint8) for i in range(600)]
    p = encode(media / "sparse_10h.mp4", tiny, frame_times=[60.0 * i for i in range(600)])
    add("sparse_10h_video", "video", "failed", "frames per second", row("sparse_10h_video", p))
    vfr_t = np.cumsum(np.where(np.arange(len(frames)) % 3 == 0, 0.08, 0.02)).tolist()
    p = encode(media / "vfr.mp4", frames, frame_times=[0.0] + vfr_t[: len(frames) - 1], audio=audio)
    add("variable_frame_rate", "video", "ok", "vfr", row("variable_frame_rate", p))
    p = encode(media / "rot90.mp4", frames, rotation=90, audio=audio)
    add("rotation_90", "video", "ok", "rotated_90", row("rotation_90", p))
    p = encode(media / "rot270.mp4", frames, rotation=270, audio=audio)
    add("rotation_270", "video", "ok", "rotated_270", row("rotation_270", p))
    p = media / "a_folder.mp4"
    p.mkdir()
    add("directory_as_uri", "video", "failed", "not a regular file", row("directory_as_uri", p))
    p = media / "pipe.mp4"
    os.mkfifo(p)
    add("fifo_as_uri", "video", "failed", "not a regular file", row("fifo_as_uri", p))
    add("missing_file", "video", "failed", "file not found", row("missing_file", media / "missing.mp4"))

    # -- audio
    p = encode(media / "no_audio.mp4", frames)
    add("no_audio_track", "audio", "ok", "no_audio", row("no_audio_track", p))
    p = encode(media / "silent.mp4", frames, audio=np.zeros_like(audio))
    add("silent_audio", "audio", "ok", "", row("silent_audio", p))
    p = encode(media / "clipped.mp4", frames, audio=np.clip(audio * 40.0, -1.0, 1.0))
    add("clipped_audio", "audio", "ok", "", row("clipped_audio", p))
    p = encode(media / "sr8k.mp4", frames, audio=_resample(audio, 16000, 8000), sample_rate=8000)
    add("audio_8khz", "audio", "ok", "", row("audio_8khz", p))
    p = encode(media / "sr96k.mkv", frames, audio=_resample(audio, 16000, 96000), sample_rate=96000, container="matroska", audio_codec="pcm_s16le")
    add("audio_96khz", "audio", "ok", "", row("audio_96khz", p))
    p = media / "voice.m4a"
    import av

    with av.open(str(p), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        fr = av.AudioFrame.from_ndarray(audio[None, :16000], format="fltp", layout="mono")
        fr.sample_rate = 16000
        for pk in s.encode(fr):
            c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    add("audio_only_input", "audio", "failed", "audio-only", row("audio_only_input", p))
    p = encode(media / "short_audio.mp4", frames, audio=audio[:6000])
    add("audio_shorter_than_video", "audio", "ok", "", row("audio_shorter_than_video", p))

    # -- paths
    d = media / "dossier avec espaces"
    d.mkdir()
    p = fresh("vidéo 日本語 ü.mp4", d)
    add("unicode_and_spaces_in_path", "path", "ok", "", row("unicode_and_spaces_in_path", p))
    p = fresh("a;$(touch PWNED_SHELL)`id`.mp4")
    add("shell_metacharacters_in_path", "path", "ok", "", row("shell_metacharacters_in_path", p))
    p = fresh("by_file_uri.mp4")
    add("file_uri", "path", "ok", "", row("file_uri", "file://" + str(p)))
    fresh("relative.mp4")
    add("relative_uri", "path", "ok", "", row("relative_uri", "media/relative.mp4"))

    # -- manifest rows
    add("duplicate_uri", "manifest", "duplicate", "same file", row("duplicate_uri", good))
    add("duplicate_uri_via_file_scheme", "manifest", "duplicate", "same file", row("duplicate_uri_via_file_scheme", "file://" + str(good)))
    add("duplicate_video_id", "manifest", "failed", "duplicate video_id", row("control_good", fresh("dup_id.mp4")))
    ca, cb = fresh("clip a.mp4"), fresh("clip_a.mp4")
    add("colliding_derived_ids", "manifest", "ok", "", [{"uri": str(ca)}, {"uri": str(cb)}])
    add("path_traversal_id", "manifest", "failed", "invalid video_id", row("../../etc/passwd", good))
    add("shell_metacharacter_id", "manifest", "failed", "invalid video_id", row("x; rm -rf $HOME", good))
    add("overlong_id", "manifest", "failed", "invalid video_id", row("v" * 300, good))
    add("row_without_uri", "manifest", "failed", "no 'uri'", [{"video_id": "row_without_uri", "license": "CC0"}])
    add("row_with_extra_columns", "manifest", "ok", "", row("row_with_extra_columns", fresh("extra_cols.mp4"), speaker_count=2, notes="x"))
    add("uri_not_a_string", "manifest", "failed", "not found", [{"uri": 12345, "video_id": "uri_not_a_string"}])
    add("remote_scheme_not_allowed", "manifest", "failed", "not allowed", row("remote_scheme_not_allowed", "https://example.com/v.mp4"))
    add("unparseable_manifest_line", "manifest", "failed", "not JSON", [{"__raw__": "{this is not json"}])
    add("manifest_line_not_object", "manifest", "failed", "not an object", [{"__raw__": "[1, 2, 3]"}])

    # extra manifests given as further --input: a CSV without a uri column, a CSV with ragged rows
    no_uri = bad / "no_uri_column.csv"
    no_uri.write_text("video_id,license\ncsv_no_uri_1,CC0\ncsv_no_uri_2,CC0\n")
    add("manifest_missing_uri_column", "manifest", "failed", "no 'uri'", [{"video_id": "csv_no_uri_1"}, {"video_id": "csv_no_uri_2"}], path=no_uri)
    ragged = bad / "ragged.csv"
    r1, r2 = fresh("ragged_1.mp4"), fresh("ragged_2.mp4")
    ragged.write_text(f"uri,video_id\n{r1},csv_ragged_long,extra1,extra2\n{r2}\n")
    add("manifest_row_with_too_many_fields", "manifest", "failed", "has 4 fields", [{"uri": str(r1)}], path=ragged)
    add("manifest_row_with_too_few_fields", "manifest", "ok", "", [{"uri": str(r2)}], path=ragged)

    manifest = bad / "manifest.jsonl"
    lines, row_kinds = [], []
    for k in kinds:
        if k.path is None:
            for r in k.rows:
                lines.append(r["__raw__"] if "__raw__" in r else json.dumps(r, ensure_ascii=False))
                row_kinds.append(k.kind)
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    extra = [no_uri, ragged]
    for f in extra:
        row_kinds += [k.kind for k in kinds if k.path == f for _ in k.rows]

    kinds += _manifest_files(bad)
    kinds += _config_files(bad)
    kinds += _model_files(bad)
    return Corpus(root=bad, manifest=manifest, extra_inputs=extra, kinds=kinds, row_kinds=row_kinds)


@pytest.fixture
def bad_corpus(tmp_path) -> Corpus:
    return make_corpus(tmp_path / "bad")


def bad_corpus_cli(corpus: Corpus, out: Path, *sets: str):
    """Run the whole demo pipeline over the corpus (manifest + extra manifests) as the CLI does."""
    args = pipeline_args(corpus.manifest, out, *sets)
    for extra in corpus.extra_inputs:
        args += ["--input", str(extra)]
    return run_flameqa(args, env=base_env(FLAMEQA_LOG="INFO"))


