from __future__ import annotations

from typing import Literal

from flameqa.configbase import Config


class AssembleConfig(Config):
    modes: tuple[Literal["dialogue", "monologue"], ...] = ("dialogue", "monologue")
    min_answer_s: float = 1.0
    max_answer_s: float = 30.0
