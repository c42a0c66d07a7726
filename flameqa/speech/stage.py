"""The speech stage: ``clips`` → ``speech`` (one row per speaker turn) + ``words`` (one row per word).

Every clip gets at least one ``speech`` row: its turns (status ``ok``), or a single row with
``turn_id = -1`` whose status says why there are none (``no_speech``, ``no_audio``, ``skipped``,
``failed``) and whose ``error`` explains it. Times are seconds from the video start.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from flameqa.io.schema import conform
from flameqa.speech.config import SpeechConfig
from flameqa.stages.base import Stage, StageContext

log = logging.getLogger(__name__)


def _status_row(clip_id: str, status: str, error: str | None, flags: list[str] | None = None) -> dict[str, Any]:
    return {"clip_id": clip_id, "turn_id": -1, "status": status, "error": error, "flags": flags or None}


class SpeechStage(Stage):
    name = "speech"
    input_table = "clips"
    output_tables = ("speech", "words")

    def __init__(self, config: SpeechConfig, ctx: StageContext) -> None:
        super().__init__(config, ctx)
        from flameqa.speech.pipeline import SpeechPipeline

        self.pipeline = SpeechPipeline(config)
        self._status: Counter[str] = Counter()
        self._seconds: Counter[str] = Counter()
        self._audio_s = 0.0

    def _audio_path(self, p: str | None) -> str | None:
        if not p:
            return None
        path = Path(p)
        if not path.is_absolute() and not path.exists() and (self.ctx.out / path).exists():
            path = self.ctx.out / path  # paths written relative to the run's output root
        return str(path)

    def clip_rows(self, clip: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
        """``speech`` and ``words`` rows of one clip row."""
        cid = clip["clip_id"]
        if clip.get("status") != "ok":
            return [_status_row(cid, "skipped", f"clip status is {clip.get('status')!r}: {clip.get('error') or 'no error given'}")], []
        res = self.pipeline.process(self._audio_path(clip.get("audio_path")), clip.get("start_s") or 0.0, clip.get("end_s"))
        for k, v in res.timings.items():
            self._seconds[k] += v
        self._audio_s += res.duration_s
        if res.status != "ok":
            return [_status_row(cid, res.status, res.error, res.flags)], []
        speech = []
        for i, t in enumerate(res.turns):
            speech.append(
                {
                    "clip_id": cid,
                    "turn_id": i,
                    "speaker": t.speaker,
                    "start_s": round(t.start_s, 3),
                    "end_s": round(t.end_s, 3),
                    "overlap": bool(t.overlap),
                    "text": res.turn_text(i),
                    "embedding": None if t.embedding is None else t.embedding.tolist(),
                    "status": "ok",
                    "error": None,
                    "flags": res.flags or None,
                }
            )
        words = [
            {
                "clip_id": cid,
                "word_idx": j,
                "turn_id": w.turn_id,
                "speaker": w.speaker,
                "word": w.word.word,
                "start_s": round(w.word.start_s, 3),
                "end_s": round(w.word.end_s, 3),
                "prob": w.word.prob,
                "segment_id": w.segment_id,
                "segment_text": res.segments[w.segment_id].text,
            }
            for j, w in enumerate(res.words)
        ]
        return speech, words

    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        speech: list[dict] = []
        words: list[dict] = []
        for clip in batch.to_pylist():
            s, w = self.clip_rows(clip)
            self._status.update(r["status"] for r in s[:1])
            speech += s
            words += w
        return {"speech": conform("speech", speech), "words": conform("words", words)}

    def on_error(self, batch: pa.Table, error: str) -> dict[str, pa.Table] | None:
        rows = [_status_row(c, "failed", error) for c in batch.column("clip_id").to_pylist()]
        self._status["failed"] += len(rows)
        return {"speech": conform("speech", rows), "words": conform("words", [])}

    def marker_extra(self) -> dict[str, Any]:
        """Models in use and this worker's running totals (clip statuses, seconds per step)."""
        return {
            **self.pipeline.describe(),
            "clip_status": dict(self._status),
            "audio_s": round(self._audio_s, 2),
            "seconds": {k: round(v, 2) for k, v in self._seconds.items()},
        }
