"""Faces: MediaPipe landmarks per frame, face tracks, active speaker.

``landmarker`` (MediaPipe FaceLandmarker wrapper, I/O edge) → ``tracks`` (linking, segments) →
``stage`` (the ``faces`` and ``speakers`` stages). Pure numpy in between: ``mouth`` (opening,
activity), ``active_speaker`` (scores, assignment), ``pose`` (head angles), ``ibug`` (the
MediaPipe → iBUG-68 map and NME). ``synth`` composes test/bench videos; ``bench`` measures fps.
Nothing here imports mediapipe, OpenCV or PyAV at module level.
"""
