"""The assemble stage: ``clips`` + ``speech``/``words``/``speakers_faces``/``flame`` → ``samples``.

Per clip: turns are merged into runs of one speaker; *dialogue* pairs a question run of speaker A
with the next run of speaker B while B's face track is fitted; *monologue* cuts the remaining runs
of on-camera speakers into sentence-aligned segments and asks a generated question. Each candidate
is measured (face visibility, fit NME, overlap, ASR probability, duration) and filtered; rejected
candidates are counted per reason and reported in the shard's marker (``extra``).
"""

from __future__ import annotations

import io
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flameqa.assemble.config import AssembleConfig
from flameqa.assemble.filters import Metrics, motion_metrics, reject_reason
from flameqa.assemble.pairing import (
    Run,
    Turn,
    Word,
    expected_frames,
    head_within,
    is_question,
    join_words,
    merge_runs,
    overlap_ratio,
    pack_segments,
    pair_dialogue,
    sample_id,
    sentence_spans,
    tail_within,
)
from flameqa.assemble.questions import make_generator
from flameqa.io.schema import column_to_numpy, conform
from flameqa.security import sanitize_id
from flameqa.stages.base import Stage, StageContext

log = logging.getLogger(__name__)

MOTION = ("expression", "jaw", "neck", "global_pose", "eyes", "transl")
"""Per-frame FLAME columns copied from ``flame`` to ``samples`` (each ``[T, N]`` float32)."""
LISTEN = ("expression", "jaw", "neck", "global_pose", "eyes", "transl")


@dataclass
class Track:
    """All fitted frames of one face track of a clip, sorted by frame index."""

    frame_idx: np.ndarray
    """[T] int64 clip frame indices."""
    valid: np.ndarray
    """[T] bool."""
    nme: np.ndarray
    """[T] float32."""
    arrays: dict[str, np.ndarray]
    """name → [T, N] float32 for each of ``MOTION``."""
    shape: np.ndarray
    model_id: str
    fps: float

    def span(self, k0: int, k1: int) -> slice:
        """Rows whose frame index lies in ``[k0, k1)``."""
        return slice(int(np.searchsorted(self.frame_idx, k0, "left")), int(np.searchsorted(self.frame_idx, k1, "left")))


def build_tracks(flame: pa.Table) -> dict[int, Track]:
    """Concatenate the ``status == ok`` segments of each track (one clip's flame rows)."""
    parts: dict[int, list[int]] = {}
    status = flame.column("status").to_pylist()
    for i, tid in enumerate(flame.column("track_id").to_pylist()):
        if status[i] == "ok":
            parts.setdefault(int(tid), []).append(i)
    tracks: dict[int, Track] = {}
    cols = {n: flame.column(n).combine_chunks() for n in ("frame_idx", "valid", "nme", *MOTION)}
    for tid, rows in parts.items():
        fi = np.concatenate([np.asarray(cols["frame_idx"][r].values, np.int64) for r in rows])
        valid = np.concatenate([np.asarray(cols["valid"][r].values.to_numpy(zero_copy_only=False), bool) for r in rows])
        nme = np.concatenate([np.asarray(cols["nme"][r].values, np.float32) for r in rows])
        arrs = {n: np.concatenate([column_to_numpy(cols[n], r) for r in rows]).astype(np.float32, copy=False) for n in MOTION}
        order = np.argsort(fi, kind="stable")
        fi = fi[order]
        keep = np.ones(fi.size, bool)
        keep[1:] = fi[1:] != fi[:-1]  # overlapping segments: first wins
        sel = order[keep]
        r0 = rows[0]
        tracks[tid] = Track(
            frame_idx=fi[keep],
            valid=valid[sel],
            nme=nme[sel],
            arrays={n: a[sel] for n, a in arrs.items()},
            shape=np.asarray(flame.column("shape")[r0].values, np.float32),
            model_id=str(flame.column("model_id")[r0].as_py()),
            fps=float(flame.column("fps")[r0].as_py()),
        )
    return tracks


def wav_bytes(x: np.ndarray, sr: int, target_sr: int) -> bytes:
    """Encode float32 mono samples [N] as 16-bit PCM wav at ``target_sr`` Hz (resampled if needed)."""
    import soundfile as sf

    if sr != target_sr and x.size:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sr), int(target_sr))
        x = resample_poly(x, target_sr // g, sr // g).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), target_sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class _Counts:
    """Counts of one shard (merged into the stage only when a batch succeeds)."""

    candidates: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    samples: Counter = field(default_factory=Counter)
    question_sources: Counter = field(default_factory=Counter)
    skipped_clips: Counter = field(default_factory=Counter)
    listening: int = 0
    llm_failed: int = 0

    def merge(self, o: "_Counts") -> None:
        for n in ("candidates", "rejected", "samples", "question_sources", "skipped_clips"):
            getattr(self, n).update(getattr(o, n))
        self.listening += o.listening
        self.llm_failed += o.llm_failed


@dataclass
class _Clip:
    """Everything known about one clip while assembling it."""

    row: dict[str, Any]
    turns: list[Turn]
    words: list[Word]
    runs: list[Run]
    run_words: list[list[int]]
    """Per run: indices into ``words`` (time order)."""
    tracks: dict[int, Track]
    speaker_track: dict[str, int]
    audio: tuple[np.ndarray, int] | None = None


def _rel(x: float, t0: float) -> float:
    return float(np.float32(x - t0))


class AssembleStage(Stage):
    name = "assemble"
    input_table = "clips"
    side_tables = ("speech", "words", "speakers_faces", "flame")
    output_tables = ("samples",)

    def __init__(self, config: AssembleConfig, ctx: StageContext) -> None:
        super().__init__(config, ctx)
        self.config: AssembleConfig = config
        self.filters = config.effective_filters()
        self.generator = make_generator(config.generator, cache_dir=Path(ctx.out) / "cache" / "questions") if "monologue" in config.modes else None
        self._counts = _Counts()
        self._failed: list[dict[str, str]] = []

    # -- runner hooks ----------------------------------------------------------------------
    def marker_extra(self) -> dict[str, Any]:
        """Counts since the previous call (the runner calls it once per shard, after the shard).

        ``rejected``: candidates dropped, per reason; ``candidates``/``samples``: per mode;
        ``skipped_clips``: clips without usable input, per reason; ``failed_clips``: clips that raised.
        """
        c, failed = self._counts, self._failed
        self._counts, self._failed = _Counts(), []
        return {
            "candidates": dict(sorted(c.candidates.items())),
            "rejected": dict(sorted(c.rejected.items())),
            "samples": dict(sorted(c.samples.items())),
            "question_sources": dict(sorted(c.question_sources.items())),
            "skipped_clips": dict(sorted(c.skipped_clips.items())),
            "listening": c.listening,
            "llm_failed": c.llm_failed,
            "failed_clips": failed,
        }

    def on_error(self, batch: pa.Table, error: str) -> dict[str, pa.Table]:
        for cid in batch.column("clip_id").to_pylist():
            self._failed.append({"clip_id": cid, "error": error[:500]})
        return {"samples": conform("samples", [])}

    # -- batch -----------------------------------------------------------------------------
    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        counts = _Counts()
        rows: list[dict[str, Any]] = []
        for clip in batch.to_pylist():
            per = {n: _for_clip(side[n], clip["clip_id"]) for n in self.side_tables}
            rows.extend(self.assemble_clip(clip, per, counts))
        self._counts.merge(counts)
        return {"samples": conform("samples", rows)}

    # -- one clip --------------------------------------------------------------------------
    def assemble_clip(self, clip: dict[str, Any], side: Mapping[str, pa.Table], counts: _Counts) -> list[dict[str, Any]]:
        """Samples of one clip (``side``: the clip's rows of each side table)."""
        if clip.get("status") != "ok":
            counts.skipped_clips["clip_failed"] += 1
            return []
        c = self._prepare(clip, side)
        if not c.turns:
            counts.skipped_clips["no_speech"] += 1
            return []
        consumed = np.zeros(len(c.words), bool)
        out: list[dict[str, Any]] = []
        if "dialogue" in self.config.modes:
            out += self._dialogue(c, consumed, counts)
        if "monologue" in self.config.modes:
            out += self._monologue(c, consumed, counts)
        return out

    def _prepare(self, clip: dict[str, Any], side: Mapping[str, pa.Table]) -> _Clip:
        sp = side["speech"]
        turns = []
        for r in sp.to_pylist():
            if r["status"] != "ok" or r["turn_id"] is None or r["turn_id"] < 0 or r["speaker"] is None or r["start_s"] is None or r["end_s"] is None:
                continue
            turns.append(Turn(int(r["turn_id"]), str(r["speaker"]), float(r["start_s"]), float(r["end_s"]), r["text"] or "", bool(r["overlap"])))
        wt = side["words"].select(["word", "start_s", "end_s", "prob", "turn_id", "speaker", "segment_id"]).to_pylist()
        words = sorted(
            (Word(w["word"], float(w["start_s"]), float(w["end_s"]), float(w["prob"]), w["turn_id"], w["speaker"], int(w["segment_id"])) for w in wt),
            key=lambda w: (w.start_s, w.end_s),
        )
        runs = merge_runs(turns, self.config.dialogue.merge_gap_s)
        by_turn: dict[int, list[int]] = {}
        for i, w in enumerate(words):
            if w.turn_id is not None:
                by_turn.setdefault(int(w.turn_id), []).append(i)
        run_words = [self._words_of(r, words, by_turn) for r in runs]
        tracks = build_tracks(side["flame"])
        speaker_track = {str(r["speaker"]): int(r["track_id"]) for r in side["speakers_faces"].select(["speaker", "track_id"]).to_pylist()}
        return _Clip(clip, turns, words, runs, run_words, tracks, speaker_track)

    @staticmethod
    def _words_of(run: Run, words: Sequence[Word], by_turn: Mapping[int, list[int]]) -> list[int]:
        """Indices (time order) of the run's words: by turn id, else by time and speaker."""
        own = sorted(i for t in run.turn_ids for i in by_turn.get(t, ()))
        if own:
            return own
        # words without turn ids: by time (centre inside the run) and speaker
        return [
            i
            for i, w in enumerate(words)
            if w.turn_id is None and (w.speaker is None or w.speaker == run.speaker) and run.start_s <= (w.start_s + w.end_s) / 2 < run.end_s
        ]

    def _track_of(self, c: _Clip, speaker: str) -> tuple[int, Track | None, str | None]:
        tid = c.speaker_track.get(speaker, -1)
        if tid < 0:
            return tid, None, "answerer_off_camera"
        tr = c.tracks.get(tid)
        if tr is None:
            return tid, None, "no_flame"
        return tid, tr, None

    # -- dialogue --------------------------------------------------------------------------
    def _dialogue(self, c: _Clip, consumed: np.ndarray, counts: _Counts) -> list[dict[str, Any]]:
        qc, dc = self.config.question, self.config.dialogue
        is_q = [is_question(r.text, qc.rule, qc.question_words, qc.regex) for r in c.runs]
        pairs, rej = pair_dialogue(c.runs, is_q, dc.min_response_gap_s, dc.max_response_gap_s)
        counts.candidates["dialogue"] += len(pairs) + len(rej)
        for _, reason in rej:
            counts.rejected[reason] += 1
        out = []
        for p in pairs:
            qrun, arun = c.runs[p.question], c.runs[p.answer]
            tid, track, why = self._track_of(c, arun.speaker)
            if why:
                counts.rejected[why] += 1
                continue
            qw_idx = c.run_words[p.question]
            consumed[qw_idx] = True
            aw_idx = c.run_words[p.answer]
            if not aw_idx:
                counts.rejected["no_words"] += 1
                continue
            aw = [c.words[i] for i in aw_idx]
            spans = sentence_spans(aw, self.config.monologue.max_pause_s)
            head = head_within(aw, spans, self.filters.max_answer_s)
            if head is None:
                counts.rejected["too_long"] += 1
                continue
            ans = aw[head[0] : head[1]]
            # question: trailing sentences of the run within max_question_s; the rest is context
            qw = [c.words[i] for i in qw_idx]
            pre: list[Word] = []
            if qw:
                qspans = sentence_spans(qw, self.config.monologue.max_pause_s)
                tail = tail_within(qw, qspans, dc.max_question_s) or qspans[-1]
                pre, qw = qw[: tail[0]], qw[tail[0] : tail[1]]
                q_text, q_start, q_end = join_words(qw), qw[0].start_s, qw[-1].end_s
            else:
                q_text, q_start, q_end = qrun.text, qrun.start_s, qrun.end_s
            a_start, a_end = ans[0].start_s, ans[-1].end_s
            context = self._context(c, p.question, dc.context_turns, a_start)
            if pre:
                context.append({"speaker": qrun.speaker, "text": join_words(pre), "start_s": _rel(pre[0].start_s, a_start), "end_s": _rel(pre[-1].end_s, a_start)})
            cand = {
                "mode": "dialogue",
                "sample_id": sample_id(c.row["clip_id"], "dialogue", arun.turn_ids[0]),
                "question_text": q_text,
                "question_source": "spoken",
                "question_speaker": qrun.speaker,
                "question_start_s": q_start,
                "question_end_s": q_end,
                "question_words": [_word_row(w, q_start) for w in qw] if qw else None,
                "context": context,
            }
            row = self._sample(c, cand, arun.speaker, tid, track, ans, counts)
            consumed[aw_idx[: head[1]]] = True  # later sentences stay free for monologue
            if row is not None:
                self._listening(c, row, track, q_start, q_end, counts)
                out.append(row)
        return out

    def _listening(self, c: _Clip, row: dict[str, Any], track: Track, q_start: float, q_end: float, counts: _Counts) -> None:
        """Attach the answerer's motion over the question span when enough of it is visible."""
        exp = expected_frames(float(c.row["start_s"]), track.fps, q_start, q_end)
        if exp.size == 0:
            return
        sl = track.span(int(exp[0]), int(exp[-1]) + 1)
        ratio, _, _, _ = motion_metrics(exp, track.frame_idx[sl], track.valid[sl], track.nme[sl])
        if ratio < self.config.dialogue.min_listen_visible_ratio:
            return
        for n in LISTEN:
            row[f"listen_{n}"] = track.arrays[n][sl]
        row["listen_valid"] = track.valid[sl]
        row["listen_frame_idx"] = track.frame_idx[sl].astype(np.int32)
        row["listen_visible_ratio"] = ratio
        counts.listening += 1

    # -- monologue -------------------------------------------------------------------------
    def _monologue(self, c: _Clip, consumed: np.ndarray, counts: _Counts) -> list[dict[str, Any]]:
        mc, qc = self.config.monologue, self.config.question
        if mc.source == "single_speaker_clips" and len({t.speaker for t in c.turns}) != 1:
            return []
        out = []
        for ri, run in enumerate(c.runs):
            free = [i for i in c.run_words[ri] if not consumed[i]]
            if not free:
                continue
            tid, track, why = self._track_of(c, run.speaker)
            if why:
                counts.candidates["monologue"] += 1
                counts.rejected["speaker_off_camera" if why == "answerer_off_camera" else why] += 1
                continue
            # consumed words split a run into contiguous pieces
            pieces: list[list[int]] = []
            for i in free:
                if pieces and pieces[-1][-1] == i - 1:
                    pieces[-1].append(i)
                else:
                    pieces.append([i])
            part = 0
            for piece in pieces:
                ws = [c.words[i] for i in piece]
                spans = sentence_spans(ws, mc.max_pause_s)
                kept, dropped = pack_segments(ws, spans, max(self.filters.min_answer_s, mc.min_segment_s), self.filters.max_answer_s, mc.max_pause_s)
                counts.candidates["monologue"] += len(kept) + len(dropped)
                for reason in dropped:
                    counts.rejected[reason] += 1
                for i, j in kept:
                    ans = ws[i:j]
                    if is_question(join_words(ans), qc.rule, qc.question_words, qc.regex):
                        counts.rejected["ends_with_question"] += 1  # a question is no answer
                        continue
                    first_turn = ans[0].turn_id if ans[0].turn_id is not None else run.turn_ids[0]
                    a_start = ans[0].start_s
                    cand = {
                        "mode": "monologue",
                        "sample_id": sample_id(c.row["clip_id"], "monologue", int(first_turn), part),
                        "question_speaker": None,
                        "question_start_s": None,
                        "question_end_s": None,
                        "question_audio": None,
                        "question_words": None,
                        "context": self._context(c, ri, mc.context_turns, a_start, before_s=a_start),
                    }
                    part += 1
                    row = self._sample(c, cand, run.speaker, tid, track, ans, counts)
                    if row is not None:
                        out.append(row)
        return out

    # -- shared ----------------------------------------------------------------------------
    def _context(self, c: _Clip, run_idx: int, n: int, t0: float, before_s: float | None = None) -> list[dict[str, Any]]:
        """Up to ``n`` runs before run ``run_idx`` (and, for monologue, the run's own earlier words)."""
        ctx = []
        for r in c.runs[max(0, run_idx - n) : run_idx] if n > 0 else []:
            ctx.append({"speaker": r.speaker, "text": r.text, "start_s": _rel(r.start_s, t0), "end_s": _rel(r.end_s, t0)})
        if before_s is not None and n > 0:
            own = [c.words[i] for i in c.run_words[run_idx] if c.words[i].end_s <= before_s]
            if own:
                ctx.append({"speaker": c.runs[run_idx].speaker, "text": join_words(own), "start_s": _rel(own[0].start_s, t0), "end_s": _rel(own[-1].end_s, t0)})
        return ctx

    def _audio(self, c: _Clip) -> tuple[np.ndarray, int] | None:
        """The clip's audio between its start and end, read once: (samples [N] float32, rate Hz)."""
        if c.audio is None:
            from flameqa.io.media import read_wav

            p = c.row.get("audio_path")
            if not p:
                return None
            path = Path(p)
            if not path.is_absolute() and not path.exists():
                path = Path(self.ctx.out) / path
            if not path.exists():
                log.warning("clip %s: audio %s is missing: its candidates are rejected (no_audio)", c.row["clip_id"], path)
                return None
            c.audio = read_wav(path, float(c.row["start_s"]), float(c.row["end_s"]))
        return c.audio

    def _cut(self, c: _Clip, start_s: float, end_s: float) -> bytes | None:
        au = self._audio(c)
        if au is None:
            return None
        x, sr = au
        t0 = float(c.row["start_s"])
        a, b = int(round((start_s - t0) * sr)), int(round((end_s - t0) * sr))
        return wav_bytes(x[max(0, a) : max(0, b)], sr, self.config.audio_sample_rate)

    def _identity(self, c: _Clip, speaker: str, tid: int) -> str:
        vid = str(c.row["video_id"])
        if self.config.identity == "video_speaker":
            return f"{vid}/{speaker}"
        if self.config.identity == "clip_track":
            return f"{c.row['clip_id']}/{tid}"
        return vid

    def _sample(self, c: _Clip, cand: dict[str, Any], speaker: str, tid: int, track: Track, ans: list[Word], counts: _Counts) -> dict[str, Any] | None:
        """Measure and filter a candidate; the full sample row when it passes (None: counted)."""
        a_start, a_end = float(ans[0].start_s), float(ans[-1].end_s)
        clip_start = float(c.row["start_s"])
        others = [(t.start_s, t.end_s) for t in c.turns if t.speaker != speaker]
        exp = expected_frames(clip_start, track.fps, a_start, a_end)
        sl = track.span(int(exp[0]), int(exp[-1]) + 1) if exp.size else slice(0, 0)
        vis, nme_mean, nme_max, gap = motion_metrics(exp, track.frame_idx[sl], track.valid[sl], track.nme[sl])
        probs = np.asarray([w.prob for w in ans], np.float64)
        m = Metrics(
            duration_s=a_end - a_start,
            n_words=len(ans),
            asr_prob_mean=float(probs.mean()) if probs.size else math.nan,
            overlap_ratio=overlap_ratio(a_start, a_end, others),
            face_visible_ratio=vis,
            nme_mean=nme_mean,
            nme_max=nme_max,
            max_missing_frames=gap,
        )
        reason = reject_reason(m, self.filters)
        if reason is None and track.frame_idx[sl].size == 0:
            reason = "face_not_visible"
        if reason is not None:
            counts.rejected[reason] += 1
            return None
        answer_audio = self._cut(c, a_start, a_end)
        if answer_audio is None:
            counts.rejected["no_audio"] += 1
            return None
        sid = sanitize_id(cand["sample_id"])
        answer_text = join_words(ans)
        if cand["mode"] == "dialogue":
            qa = self._cut(c, cand["question_start_s"], cand["question_end_s"])
            cand["question_audio"] = {"bytes": qa, "path": f"{sid}.question.wav"} if qa is not None else None
        else:
            q = self.generator(answer_text, [f"{x['speaker']}: {x['text']}" for x in cand["context"]])
            cand["question_text"], cand["question_source"] = q.text, q.source
            counts.llm_failed += int(q.failed)
        fi = track.frame_idx[sl]
        row = {
            **cand,
            "sample_id": sid,
            "clip_id": c.row["clip_id"],
            "video_id": c.row["video_id"],
            "answer_text": answer_text,
            "answer_speaker": speaker,
            "answer_start_s": a_start,
            "answer_end_s": a_end,
            "answer_words": [_word_row(w, a_start) for w in ans],
            "answer_audio": {"bytes": answer_audio, "path": f"{sid}.answer.wav"},
            "identity": self._identity(c, speaker, tid),
            "model_id": track.model_id,
            "fps": track.fps,
            "shape": track.shape,
            **{n: track.arrays[n][sl] for n in MOTION},
            "valid": track.valid[sl],
            "face_visible_ratio": m.face_visible_ratio,
            "nme_mean": m.nme_mean,
            "nme_max": m.nme_max,
            "overlap_ratio": m.overlap_ratio,
            "asr_prob_mean": m.asr_prob_mean,
            "duration_s": m.duration_s,
            "license": c.row.get("license"),
            "source": c.row.get("source"),
            "answer_track_id": tid,
            "clip_start_s": clip_start,
            "frame_idx": fi.astype(np.int32),
            "motion_offset_s": float(clip_start + fi[0] / track.fps - a_start),
            "n_frames": int(fi.size),
        }
        counts.samples[cand["mode"]] += 1
        counts.question_sources[row["question_source"].split(":")[0]] += 1
        return row


def _word_row(w: Word, t0: float) -> dict[str, Any]:
    return {"word": w.word.strip(), "start_s": _rel(w.start_s, t0), "end_s": _rel(w.end_s, t0), "prob": float(w.prob)}


def _for_clip(t: pa.Table, clip_id: str) -> pa.Table:
    if t.num_rows == 0:
        return t
    return t.filter(pc.equal(t.column("clip_id"), pa.scalar(clip_id, t.schema.field("clip_id").type)))


__all__ = ["AssembleStage", "Track", "build_tracks", "wav_bytes"]
