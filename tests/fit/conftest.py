"""Fixtures for the fit tests: the demo head (generated once per session) and small synthetic tracks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
# torch's CPU thread pool collapses when the machine's cores are shared with other jobs; the fit
# stage runs single-threaded by default (fit.cpu_threads) and so do its tests
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_layer():
    from flameqa.flame import FlameLayer

    return FlameLayer.from_file("demo", n_shape=100, n_expr=50)


@pytest.fixture(scope="session")
def demo_fitter(demo_layer):
    """A CPU fitter on the demo head with the ``tracking`` preset (what the synthetic data follows)."""
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import build_fitter

    cfg = FitConfig.model_validate({"smooth": {"preset": "tracking"}})
    return build_fitter(cfg, device="cpu", layer=demo_layer)


def make_fitter(layer, **overrides):
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import build_fitter

    cfg = FitConfig.model_validate(overrides)
    return build_fitter(cfg, device="cpu", layer=layer)
