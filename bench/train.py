"""Reference-model training throughput: steps/s, samples/s, and data-loader headroom (goal ≥ 5×).

Prints one JSON object per configuration. Usage:
    python bench/train.py [--data DIR] [--config pipelines/train.yaml] [--steps 30] [--set key=value ...]
CPU by default (the cpu preset); with a GPU, ``--config`` a gpu-preset file or ``--set preset=gpu``.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--config")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    a = ap.parse_args()
    from flameqa.train.bench import bench_training
    from flameqa.train.config import load_train_config

    print(json.dumps(bench_training(a.data, load_train_config(a.config, a.overrides), steps=a.steps), indent=1))


if __name__ == "__main__":
    main()
