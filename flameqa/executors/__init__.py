"""Executors beyond the local one (``flameqa.runner.run_stage_local``).

Each exposes ``run_stage_<name>(stage_name, cfg, out, manifest_rows, ctx, progress) -> StageReport``
with the local executor's signature, so ``run_pipeline`` can pick one from ``runner.executor``.
Modules are imported on demand: ``import flameqa`` never imports ray.
"""
