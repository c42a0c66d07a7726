"""Question/answer assembly: pairing rules (pairing.py, pure), question generators (questions.py),
quality filters (filters.py) and the ``assemble`` stage (stage.py)."""
