"""The speech → motion model is causal; the tokenizer round-trips shapes and learns only in training mode."""

from __future__ import annotations

import pytest
import torch

from flameqa.train.config import ModelConfig, TokenizerConfig
from flameqa.train.models import MotionTokenizer, ResidualVQ, SpeechToMotion


@pytest.mark.parametrize("arch", ["tcn", "tcn_gru"])
def test_speech_to_motion_is_causal(arch):
    torch.manual_seed(0)
    m = SpeechToMotion(ModelConfig(arch=arch, hidden=16, layers=3, dropout=0.0), n_mels=8, k=2, d_motion=7, text_buckets=32).eval()
    x = torch.randn(2, 60, 8)
    text = torch.tensor([[3, 5], [0, 0]])
    y = m(x, text)
    assert y.shape == (2, 30, 7)
    x2 = x.clone()
    x2[:, 2 * 12 :] += torch.randn_like(x2[:, 24:])  # change audio from motion frame 12 on
    y2 = m(x2, text)
    torch.testing.assert_close(y[:, :12], y2[:, :12])
    assert not torch.allclose(y[:, 12:], y2[:, 12:])
    with pytest.raises(ValueError, match=r"\[B, T\*2, 8\]"):
        m(torch.randn(1, 7, 8))


def test_text_conditioning_changes_output_and_padding_is_no_text():
    torch.manual_seed(0)
    m = SpeechToMotion(ModelConfig(hidden=16, layers=2, dropout=0.0), n_mels=8, k=1, d_motion=5, text_buckets=32).eval()
    torch.nn.init.normal_(m.film.weight, std=0.5)  # zero-initialised FiLM: give it an effect
    x = torch.randn(1, 10, 8)
    assert not torch.allclose(m(x, torch.tensor([[4]])), m(x, torch.tensor([[9]])))
    torch.testing.assert_close(m(x, torch.tensor([[0, 0]])), m(x, None))


def test_tokenizer_shapes_and_decode_of_encode():
    torch.manual_seed(0)
    for down in (1, 2, 4):
        tok = MotionTokenizer(TokenizerConfig(hidden=16, code_dim=8, n_quantizers=3, codebook_size=16, downsample=down), d_motion=9)
        x = torch.randn(2, 21, 9)
        tok.train()
        rec, codes, commit = tok(x)  # initialises the codebooks
        assert rec.shape == x.shape and codes.shape == (2, -(-21 // down), 3) and commit.ndim == 0
        tok.eval()
        rec, codes, _ = tok(x)
        torch.testing.assert_close(tok.decode(tok.encode(x), 21), rec)
        assert int(codes.max()) < 16


def test_codebooks_update_in_training_mode_only():
    torch.manual_seed(0)
    vq = ResidualVQ(2, 8, 4, decay=0.9, dead_threshold=0.1)
    z = torch.randn(64, 4)
    vq.train()
    vq(z)
    before = vq.embed.clone()
    vq.eval()
    _, codes, _ = vq(z)
    torch.testing.assert_close(vq.embed, before)
    vq.train()
    vq(z + 1)
    assert not torch.equal(vq.embed, before)
    assert vq.decode(codes).shape == (64, 4)
