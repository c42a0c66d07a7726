"""The reference speech → FLAME motion model, trained and evaluated on FLAME-QA samples.

- :mod:`~flameqa.train.config`: typed configs (cpu / gpu presets), ``pipelines/train.yaml``.
- :mod:`~flameqa.train.data`: samples → aligned log-mel / motion sequences, identity splits,
  per-identity normalisation, deterministic windows (in memory or streamed).
- :mod:`~flameqa.train.models`: the causal speech → motion network and the residual-VQ motion tokenizer.
- :mod:`~flameqa.train.metrics`: LVE, MVE, FDD, expression FD, lip sync, jitter through the FLAME
  layer; the mean-motion and audio-energy → jaw baselines.
- :mod:`~flameqa.train.loop`: training with periodic evaluation, checkpoints and exact resume.
- :mod:`~flameqa.train.evaluate`, :mod:`~flameqa.train.predict`, :mod:`~flameqa.train.bench`.
- :mod:`~flameqa.train.synth`: a synthetic dataset with known speech → motion structure.

Importing this package is light; torch is imported by the submodules.
"""
