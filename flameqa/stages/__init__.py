"""Stage registry: names → ``module:Class`` (imported lazily so ``import flameqa`` stays light)."""

from __future__ import annotations

import importlib

STAGES: dict[str, str] = {
    "ingest": "flameqa.ingest.stage:IngestStage",
    "speech": "flameqa.speech.stage:SpeechStage",
    "faces": "flameqa.vision.stage:FacesStage",
    "speakers": "flameqa.vision.stage:SpeakersStage",
    "fit": "flameqa.fit.stage:FitStage",
    "assemble": "flameqa.assemble.stage:AssembleStage",
}

ORDER = list(STAGES)


def stage_class(name: str):
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known: {ORDER}")
    mod, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(mod), cls)
