"""The demo's training step: a short run on the exported demo dataset, then a rendered prediction.

The demo export has few identities (often one), so held-out metrics may be impossible; then the
model and baselines are also measured on the training identities and labelled as such.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["demo_train"]


def demo_train(export: str | os.PathLike, out: str | os.PathLike, run: str | os.PathLike | None = None, steps: int = 300) -> dict[str, Path]:
    """Train ``steps`` steps (cpu preset) on ``export``, predict the first answer's motion from its
    audio and render it. Returns ``{label: path}`` of what was written under ``out``."""
    import soundfile as sf

    from flameqa.train.config import load_train_config
    from flameqa.train.data import decode_audio, iter_rows
    from flameqa.train.evaluate import evaluate_checkpoint
    from flameqa.train.loop import train
    from flameqa.train.predict import predict_file

    out = Path(out)
    cfg = load_train_config(None, [f"train.max_steps={steps}", f"train.eval_every={steps}", f"train.ckpt_every={steps}"])
    res = train(export, out / "run", cfg)
    outputs: dict[str, Path] = {"train run": out / "run", "train metrics log": out / "run" / "metrics.jsonl"}
    if "metrics" in res:
        outputs["held-out metrics"] = out / "run" / "metrics.json"
    else:
        seen = evaluate_checkpoint(out / "run", export, identities="all")
        seen["note"] = "no held-out identity in this data: training identities, model and baselines alike"
        (out / "metrics_seen_identities.json").write_text(json.dumps(seen, indent=1, sort_keys=True))
        outputs["metrics (training identities)"] = out / "metrics_seen_identities.json"
    row = next(iter_rows(export))
    wav = decode_audio(row["answer_audio"], cfg.data.sample_rate)
    audio = out / f"{row['sample_id']}.wav"
    sf.write(audio, wav, cfg.data.sample_rate)
    ident = row.get("identity") if row.get("identity") in res["train_identities"] else None
    motion = predict_file(out / "run", audio, out / f"{row['sample_id']}.motion.parquet", identity=ident, question=row.get("question_text"))
    outputs["predicted motion"] = motion
    from flameqa.render.video import render_motion

    dest = out / f"{row['sample_id']}.prediction.mp4"
    try:
        outputs["prediction video"] = render_motion(motion, dest, audio=audio, model=cfg.eval.flame_model)
    except ValueError as e:  # muxing the audio can fail in the renderer; the silent video still shows the motion
        log.warning("prediction video without audio (muxing failed: %s)", e)
        outputs["prediction video"] = render_motion(motion, dest, model=cfg.eval.flame_model)
    return outputs
