"""flameqa: build FLAME-QA datasets from conversational talking-head video.

Importing the package is light: torch, mediapipe, ray, av and faster-whisper are imported only by
the modules that use them.
"""

__version__ = "0.1.0"
