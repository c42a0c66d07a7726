"""Whole-pipeline benchmarks (the per-stage ones live next to their stages: ``vision.bench``, ...)."""
