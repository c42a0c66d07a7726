"""End to end: train on the synthetic set, beat the baselines on held-out identities, resume exactly,
predict a motion parquet, and the CLI commands over the same library calls."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch


def test_model_beats_baselines_on_held_out_identities(trained):
    out, res = trained
    m = res["metrics"]
    assert set(res["val_identities"]).isdisjoint(res["train_identities"]) and res["val_identities"]
    model, mean, energy, tok = m["model"], m["mean_motion"], m["energy_jaw"], m["tokenizer_recon"]
    # lip vertex error: clearly below both baselines
    assert model["lve"] < 0.6 * min(mean["lve"], energy["lve"]), m
    assert model["mve"] < min(mean["mve"], energy["mve"])
    # lip sync: the predicted jaw follows the true jaw better, and its audio-energy correlation is
    # closer to the ground truth's than the energy regression's (which is near 1 by construction)
    assert model["lipsync_corr"] > max(mean["lipsync_corr"], energy["lipsync_corr"]) + 0.1, m
    assert model["jaw_energy_gap"] < min(mean["jaw_energy_gap"], energy["jaw_energy_gap"]), m
    assert model["fd_expression"] < min(mean["fd_expression"], energy["fd_expression"])
    # the tokenizer reconstructs motion well below the model's error
    assert tok["lve"] < 0.6 * model["lve"], (tok["lve"], model["lve"])
    # what was written
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "checkpoints" / "best.pt").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["model"]["lve"] == pytest.approx(model["lve"])
    kinds = [json.loads(line)["kind"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert kinds[0] == "baselines" and "train" in kinds and "val" in kinds


def _records(path):
    recs = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        r.pop("steps_per_s", None)  # wall-clock
        recs.append(r)
    return recs


@pytest.mark.parametrize("streaming", [False, True])
def test_interrupted_training_resumes_to_the_same_weights_and_metrics(synth_dir, tmp_path, streaming):
    from flameqa.train.config import load_train_config
    from flameqa.train.loop import train

    cfg = load_train_config(None, [
        "train.max_steps=16", "train.eval_every=8", "train.ckpt_every=4", "train.log_every=2", "model.hidden=16",
        "tokenizer.hidden=16", "tokenizer.n_quantizers=2", "data.max_samples=18", "train.seed=3", "train.batch_size=6",
        f"data.streaming={str(streaming).lower()}", "data.shuffle_buffer=4", "data.val_fraction=0.4",
    ])  # fmt: skip
    a = train(synth_dir, tmp_path / "a", cfg)
    assert a["val_identities"] and "metrics" in a

    def crash(step, losses):
        if step == 10:  # two steps after the step-8 checkpoint: those two are lost and redone
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(synth_dir, tmp_path / "b", cfg, on_step=crash)
    b = train(synth_dir, tmp_path / "b", cfg)  # resumes from checkpoints/last.pt (step 8)

    sa = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    for part in ("model", "tokenizer"):
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)
    assert sa["optimizer"]["state"].keys() == sb["optimizer"]["state"].keys()
    assert a["metrics"] == b["metrics"]
    assert _records(tmp_path / "a" / "metrics.jsonl") == _records(tmp_path / "b" / "metrics.jsonl")

    if not streaming:
        # a changed model config refuses to resume
        bad = cfg.model_copy(update={"model": cfg.model.model_copy(update={"hidden": 32})})
        with pytest.raises(ValueError, match="model.hidden"):
            train(synth_dir, tmp_path / "b", bad)


def test_predict_writes_flame_table_motion_aligned_at_25_fps(trained, tmp_path):
    from flameqa.io.schema import column_to_numpy, load_schema
    from flameqa.train.predict import predict_file, predict_motion

    out, _ = trained
    sr = 16000
    dur = 2.03
    t = np.arange(int(dur * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    sf.write(tmp_path / "x.wav", wav, sr)
    p = predict_file(out, tmp_path / "x.wav", tmp_path / "motion.parquet", question="Tell me a joke")
    table = pq.read_table(p)
    schema = load_schema("flame").arrow
    assert table.schema.names == schema.names
    for f in schema:
        assert table.schema.field(f.name).type == f.type, f.name
    T = int(np.ceil(dur * 25))
    assert table.num_rows == 1 and table.column("fps")[0].as_py() == 25.0
    expr = column_to_numpy(table.column("expression"), 0)
    jaw = column_to_numpy(table.column("jaw"), 0)
    assert expr.shape == (T, 100) and jaw.shape == (T, 3)
    assert np.all(expr[:, 50:] == 0) and np.isfinite(expr).all()
    assert table.column("status")[0].as_py() == "predicted"
    assert table.column("model_id")[0].as_py() == "flameqa-demo-head"
    # causal and aligned: frame f depends on audio before (f + 1) / fps only
    cut = 20
    wav2 = wav.copy()
    wav2[int((cut + 1) / 25 * sr) :] = 0
    a = predict_motion(out, wav, sample_rate=sr)
    b = predict_motion(out, wav2, sample_rate=sr)
    np.testing.assert_allclose(a.jaw[: cut + 1], b.jaw[: cut + 1], atol=1e-5)
    assert not np.allclose(a.jaw[cut + 5 :], b.jaw[cut + 5 :], atol=1e-4)
    # 44.1 kHz stereo input is resampled and mixed down to the same frame count
    sf.write(tmp_path / "y.wav", np.stack([np.interp(np.arange(int(dur * 44100)) / 44100, t, wav)] * 2, 1), 44100)
    assert predict_motion(out, tmp_path / "y.wav").n_frames == T


def test_cli_eval_predict_and_config_errors(trained, synth_dir, tmp_path):
    from typer.testing import CliRunner

    import flameqa.cli  # noqa: F401  (registers every command)
    from flameqa.cli.app import app

    out, res = trained
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "motion", "--ckpt", str(out / "checkpoints" / "last.pt"), "--data", str(synth_dir), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["identities"] == res["val_identities"] and got["flame_model"] == "flameqa-demo-head"
    assert got["metrics"]["model"]["lve"] == pytest.approx(res["metrics"]["model"]["lve"], rel=1e-5)
    assert got["metrics"]["model"]["lve"] < got["metrics"]["energy_jaw"]["lve"]

    sr = 16000
    sf.write(tmp_path / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(sr)).astype(np.float32), sr)
    r = runner.invoke(app, ["predict", "--ckpt", str(out), "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "m.parquet")])
    assert r.exit_code == 0, r.output
    assert pq.read_table(tmp_path / "m.parquet").num_rows == 1
    r = runner.invoke(app, ["predict", "--ckpt", str(out), "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "n.parquet"), "--identity", "nobody"])
    assert r.exit_code == 2 and "nobody" in r.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  arch: lstm\n")
    r = runner.invoke(app, ["train", "--data", str(synth_dir), "--out", str(tmp_path / "r"), "--config", str(bad)])
    assert r.exit_code == 2 and "model.arch" in r.output
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_tensorboard_events_when_available(synth_dir, tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    from flameqa.train.config import load_train_config
    from flameqa.train.loop import train

    cfg = load_train_config(None, ["train.max_steps=2", "train.log_every=1", "model.hidden=8", "tokenizer.enabled=false", "data.max_samples=12"])
    train(synth_dir, tmp_path / "r", cfg)
    assert list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))
