"""Fixtures for the trainer tests: a synthetic FLAME-QA folder and one short trained run (session-wide)."""

from __future__ import annotations

import pytest
import torch

# the CPU preset's setting; tests run beside other work on small machines, where extra threads thrash
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    from flameqa.train.synth import SynthConfig, make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "ds", SynthConfig(n_identities=6, samples_per_identity=6, seed=0))


@pytest.fixture(scope="session")
def trained(synth_dir, tmp_path_factory):
    """(run folder, final metrics) of the cpu preset trained for 200 steps on ``synth_dir``."""
    from flameqa.train.config import load_train_config
    from flameqa.train.loop import train

    cfg = load_train_config(None, ["train.max_steps=200", "train.eval_every=200", "train.ckpt_every=200"])
    out = tmp_path_factory.mktemp("runs") / "synth"
    res = train(synth_dir, out, cfg)
    return out, res
