"""Actor pool sizing from cluster resources, and the Ray pipeline config (no Ray started)."""

from __future__ import annotations

import pytest

from flameqa.config import RayConfig, load_config
from flameqa.executors.ray import plan_actors
from flameqa.stages.base import Stage
from tests.conftest import ROOT


class CpuStage(Stage):
    name = "cpu"
    uses_gpu = False


class GpuStage(Stage):
    name = "gpu"
    uses_gpu = True


def test_gpu_stage_on_a_gpu_less_cluster_runs_on_cpu():
    p = plan_actors(GpuStage, RayConfig(), n_shards=10, resources={"CPU": 4.0})
    assert (p.num_gpus, p.num_cpus, p.size) == (0.0, 1.0, 4)


def test_gpu_stage_gets_gpus_the_cluster_reports():
    res = {"CPU": 32.0, "GPU": 2.0}
    assert plan_actors(GpuStage, RayConfig(), 10, res) == plan_actors(GpuStage, RayConfig(cpus_per_actor=1), 10, res)
    p = plan_actors(GpuStage, RayConfig(), 10, res)
    assert (p.num_gpus, p.size) == (1.0, 2)
    p = plan_actors(GpuStage, RayConfig(gpus_per_actor=0.5), 10, res)
    assert (p.num_gpus, p.size) == (0.5, 4)
    p = plan_actors(GpuStage, RayConfig(), 10, {"CPU": 8.0, "GPU": 0.5})  # a fractional GPU: never ask for more
    assert (p.num_gpus, p.size) == (0.5, 1)


def test_cpu_stage_never_asks_for_gpus_and_pool_is_bounded():
    res = {"CPU": 16.0, "GPU": 4.0}
    p = plan_actors(CpuStage, RayConfig(), 100, res)
    assert (p.num_gpus, p.size) == (0.0, 16)
    assert plan_actors(CpuStage, RayConfig(cpus_per_actor=2), 100, res).size == 8
    assert plan_actors(CpuStage, RayConfig(), 3, res).size == 3  # no idle actors beyond the shards to do
    assert plan_actors(CpuStage, RayConfig(max_actors=5), 100, res).size == 5
    assert plan_actors(CpuStage, RayConfig(), 4, {"CPU": 0.5}).num_cpus == 0.5  # never more than the cluster has


@pytest.mark.parametrize("kw", [dict(gpus_per_actor=0), dict(cpus_per_actor=-1), dict(max_actors=0)])
def test_bad_actor_settings_name_the_key(kw):
    with pytest.raises(ValueError, match="ray\\."):
        plan_actors(CpuStage, RayConfig(**kw), 1, {"CPU": 2.0})


def test_ray_pipeline_yaml_is_valid():
    cfg = load_config(ROOT / "pipelines" / "ray.yaml")
    assert cfg.runner.executor == "ray"
    assert cfg.ray.include_dashboard is False and cfg.ray.auth_mode == "disabled"
