from __future__ import annotations

from typing import Literal

from flameqa.configbase import Config


class FitConfig(Config):
    model: str = "demo"
    """FLAME model file (generic_model.pkl, flame2023.pkl, .npz), or ``demo`` for the generated demo head."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    n_shape: int = 100
    n_expr: int = 50
