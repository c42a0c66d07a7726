"""The root pipeline config: one typed config per stage, loaded from YAML, overridable from the CLI.

A bad key or value fails before any work with a message naming the key and what is allowed.
The resolved config is saved next to the outputs (``OUT/config.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from flameqa.assemble.config import AssembleConfig
from flameqa.configbase import Config
from flameqa.export.config import ExportConfig
from flameqa.fit.config import FitConfig
from flameqa.ingest.config import IngestConfig
from flameqa.speech.config import SpeechConfig
from flameqa.vision.config import FacesConfig, SpeakersConfig

StageName = Literal["ingest", "speech", "faces", "speakers", "fit", "assemble"]


class RayConfig(Config):
    """Settings of the Ray executor (``runner.executor: ray``); see docs/ray.md."""

    address: str | None = None
    """``auto`` (or ``host:6379``) joins a running cluster started with ``ray start --head``;
    ``ray://host:10001`` connects through Ray Client. None starts Ray in-process on this machine
    (or joins ``$RAY_ADDRESS`` when that is set)."""
    num_cpus: int | None = None
    """CPUs of an in-process Ray (None: all of this machine's). Ignored when joining a cluster."""
    num_gpus: int | None = None
    """GPUs of an in-process Ray (None: what Ray detects; 0 keeps the fit on CPU). Ignored when
    joining a cluster."""
    object_store_memory: int = 512 * 1024 * 1024
    """Bytes of shared memory for an in-process Ray's object store. Only shard descriptors and
    summaries travel through it (the stages read and write shards on disk), so it can stay small."""
    temp_dir: str | None = None
    """Session/log/socket folder of an in-process Ray (None: Ray's default ``/tmp/ray``). Keep the
    path short: Ray's unix sockets live under it (107-character limit)."""
    include_dashboard: bool = False
    usage_stats: bool = False
    """Ray's usage-stats reporting (sets ``RAY_USAGE_STATS_ENABLED`` before Ray is imported)."""
    auth_mode: Literal["disabled", "token"] | None = "disabled"
    """Value for ``RAY_AUTH_MODE`` (None: leave the environment as it is)."""
    log_to_driver: bool = False
    """Echo actor stdout/stderr on the driver. Off by default: a shard's error comes back in the
    run report anyway and every actor's log stays under ``<temp_dir>/session_latest/logs``."""
    progress_bars: bool = False
    """Ray Data's own progress bars (the CLI draws its own per-stage bar either way)."""
    cpus_per_actor: float = 1.0
    """CPUs reserved by each stage actor (its torch/ONNX thread pools see this many)."""
    gpus_per_actor: float = 1.0
    """GPU share of each actor of a GPU stage (the fit), used only when the cluster has GPUs;
    0.5 packs two actors on one GPU."""
    max_actors: int | None = None
    """Upper bound on a stage's actor pool (None: as many as the cluster's CPUs/GPUs and the
    number of shards to do allow)."""
    max_task_retries: int = 2
    """Times a shard is retried after its actor died (killed, OOM, segfault). Ray restarts dead
    actors; a shard that kills its actor ``max_task_retries + 1`` times is reported as failed
    (no marker, rerun to retry) and the other shards go on."""
    ray_remote_args: dict[str, Any] = {}
    """Extra actor options passed to ``map_batches`` (``memory``, ``resources``, ``runtime_env``,
    ``max_restarts`` ...). Keep ``max_restarts`` at Ray's -1: a pool whose actor ran out of
    restarts stalls instead of failing."""


class RunnerConfig(Config):
    executor: Literal["local", "ray"] = "local"
    workers: int = 1
    """Processes for the local executor (1 = in-process, easiest to debug)."""
    stage_workers: dict[StageName, int] = {}
    """Processes of single stages, overriding ``workers`` (local executor), e.g. ``{faces: 16,
    speech: 4, fit: 2}`` on a GPU node: MediaPipe on every core, a few processes sharing the GPU.
    The Ray executor sizes its actor pools from the cluster instead."""
    batch_groups: int = 4
    """Clips (groups of rows) handed to a stage per call."""
    inner_processes: int | None = None
    """Processes a stage may use inside one shard when the local executor runs it in the main
    process (``workers`` 1 for that stage): the faces stage landmarks a batch's clips in parallel
    and the CPU fit splits a batch's clips, the stage's own process taking one share
    (:mod:`flameqa.stages.pool`). None: the CPUs this process may use; 1: off. Inside runner or Ray
    workers it is always 1 (their pools already occupy the cores). Not part of the config hash: it
    changes speed, not results (faces: identical rows; fit: equal to float round-off, as for any
    batch composition)."""
    concurrent_stages: bool = True
    """Local executor: start each stage as soon as the stages whose tables it reads are done, so
    independent stages run at the same time (speech beside faces, speakers beside fit) and share
    the cores. False: one stage after another, in pipeline order (easiest to debug and profile)."""
    overwrite: bool = False
    """Redo shards even when their completion marker matches."""


class PipelineConfig(Config):
    name: str = "flameqa"
    stages: tuple[StageName, ...] = ("ingest", "speech", "faces", "speakers", "fit", "assemble")
    runner: RunnerConfig = RunnerConfig()
    ray: RayConfig = RayConfig()
    ingest: IngestConfig = IngestConfig()
    speech: SpeechConfig = SpeechConfig()
    faces: FacesConfig = FacesConfig()
    speakers: SpeakersConfig = SpeakersConfig()
    fit: FitConfig = FitConfig()
    assemble: AssembleConfig = AssembleConfig()
    export: ExportConfig = ExportConfig()

    def stage_config(self, stage: str) -> Config:
        return getattr(self, stage)


class ConfigError(ValueError):
    """A pipeline config that cannot be used; the message names the key and the allowed values."""


def _fmt_validation(e: ValidationError, source: str) -> str:
    lines = [f"invalid pipeline config ({source}):"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = PipelineConfig
            for part in err["loc"][:-1]:
                f = parent.model_fields.get(str(part))
                parent = f.annotation if f is not None and isinstance(f.annotation, type) else None
                if parent is None:
                    break
            allowed = sorted(parent.model_fields) if parent is not None else []
            msg = f"unknown key; allowed keys here: {allowed}"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``fit.device=cuda`` → (["fit", "device"], "cuda"); values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def read_yaml_sections(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Read a YAML mapping of sections; ConfigError naming ``what`` and the file otherwise."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must be a mapping of sections, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw config mapping in place (and return it)."""
    for item in overrides or []:
        keys, value = parse_override(item)
        d = raw
        for k in keys[:-1]:
            d = d.setdefault(k, {})
            if not isinstance(d, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
        d[keys[-1]] = value
    return raw


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None, **top: Any) -> PipelineConfig:
    """Load a pipeline YAML (or defaults), apply ``section.key=value`` overrides, validate."""
    raw: dict[str, Any] = read_yaml_sections(path, "pipeline config") if path is not None else {}
    source = str(path) if path is not None else "defaults"
    apply_overrides(raw, overrides)
    for k, v in top.items():
        if v is not None:
            raw[k] = v
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_fmt_validation(e, source)) from None


def config_hash(obj: Config | dict[str, Any], *parts: str) -> str:
    """Stable short hash of a config (and extra strings, e.g. upstream hashes)."""
    data = obj.model_dump(mode="json") if isinstance(obj, Config) else obj
    h = hashlib.sha256(json.dumps(data, sort_keys=True).encode())
    for p in parts:
        h.update(p.encode())
    return h.hexdigest()[:16]


def save_config(cfg: PipelineConfig, out: str | os.PathLike) -> Path:
    from flameqa.io.shards import atomic_write_bytes
    from flameqa.security import redact_obj

    path = Path(out) / "config.yaml"
    data = redact_obj(cfg.model_dump(mode="json"))
    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())
    return path
