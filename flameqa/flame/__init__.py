"""FLAME-format face models: safe loading, a batched layer, landmark embeddings, the demo head.

``from flameqa.flame import FlameLayer`` imports torch (this subpackage is the torch boundary);
``import flameqa`` does not import it.
"""

from flameqa.flame.io import FlameFileError, FlameModelData, UnsafePickleError, load_model
from flameqa.flame.layer import FlameLayer, FlameOutput, compose_pose, resolve_model_path

__all__ = [
    "FlameLayer",
    "FlameOutput",
    "FlameFileError",
    "FlameModelData",
    "UnsafePickleError",
    "compose_pose",
    "load_model",
    "resolve_model_path",
]
