"""Models: a causal speech → motion network and a residual-VQ motion tokenizer.

Shapes: B batch, T motion frames, k log-mel frames per motion frame, M mel bins, D motion dims
(n_expr + 3 jaw + 3 neck), C channels, Q quantizer levels, K codebook size. Motion is normalised
(per identity, :class:`flameqa.train.data.NormStats`) everywhere in this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flameqa.train.config import ModelConfig, TokenizerConfig

__all__ = ["SpeechToMotion", "MotionTokenizer", "ResidualVQ", "CausalConv1d"]


class CausalConv1d(nn.Module):
    """Dilated convolution over ``[B, T, C]``. Causal (default): output t sees inputs t, t-d, ...,
    t-(k-1)d; otherwise centred ("same"). Zeros outside the sequence. One matmul over the stacked
    shifted inputs: on CPU several times faster than a dilated ``conv1d`` at these sizes, and no
    layout transposes."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, causal: bool = True) -> None:
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        span = (kernel - 1) * dilation
        self.left = span if causal else span // 2
        self.right = span - self.left
        self.linear = nn.Linear(kernel * cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        xp = F.pad(x, (0, 0, self.left, self.right))  # [B, left + T + right, C]
        # tap j reads input t - left + j*dilation, i.e. padded index t + j*dilation
        taps = torch.cat([xp[:, j * self.dilation : j * self.dilation + T] for j in range(self.kernel)], dim=-1)
        return self.linear(taps)


class _CausalBlock(nn.Module):
    """Pre-norm residual block on ``[B, T, C]``: causal dilated conv → gated tanh → linear."""

    def __init__(self, c: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.conv = CausalConv1d(c, 2 * c, kernel, dilation)
        self.proj = nn.Linear(c, c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        h = self.norm(x)
        if film is not None:
            scale, shift = film  # [B, 1, C] each
            h = h * (1 + scale) + shift
        a, g = self.conv(h).chunk(2, dim=-1)
        return x + self.drop(self.proj(torch.tanh(a) * torch.sigmoid(g)))


class SpeechToMotion(nn.Module):
    """Causal log-mel → motion: stack k mel frames per motion frame, dilated causal convs (gated,
    residual), optional unidirectional GRU, linear head. Output frame t depends only on audio up
    to the end of motion frame t, so the model streams. A hashed bag-of-words embedding of the
    question (``text [B, L]``, 0 = padding) modulates every block (FiLM) when enabled.
    """

    def __init__(self, cfg: ModelConfig, n_mels: int, k: int, d_motion: int, text_buckets: int) -> None:
        super().__init__()
        self.cfg, self.k, self.n_mels, self.d_motion = cfg, k, n_mels, d_motion
        c = cfg.hidden
        self.inp = nn.Linear(k * n_mels, c)
        self.blocks = nn.ModuleList(_CausalBlock(c, cfg.kernel, 2**i, cfg.dropout) for i in range(cfg.layers))
        self.gru = nn.GRU(c, c, batch_first=True) if cfg.arch == "tcn_gru" else None
        self.use_text = cfg.text_conditioning and text_buckets > 0
        if self.use_text:
            self.text = nn.EmbeddingBag(text_buckets + 1, c, mode="mean", padding_idx=0)
            self.film = nn.Linear(c, 2 * c * cfg.layers)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.norm = nn.LayerNorm(c)
        self.out = nn.Linear(c, d_motion)

    @property
    def receptive_field(self) -> int:
        """Motion frames of audio context the conv stack sees (the GRU adds unbounded memory)."""
        return 1 + sum((self.cfg.kernel - 1) * 2**i for i in range(self.cfg.layers))

    def forward(self, feats: Tensor, text: Tensor | None = None) -> Tensor:
        """``feats [B, T*k, M]`` (normalised log-mel), ``text [B, L]`` → motion ``[B, T, D]``."""
        B, F_, M = feats.shape
        if M != self.n_mels or F_ % self.k:
            raise ValueError(f"feats must be [B, T*{self.k}, {self.n_mels}], got {list(feats.shape)}")
        h = self.inp(feats.reshape(B, F_ // self.k, self.k * M))  # [B, T, C]
        C = h.shape[-1]
        films: list[tuple[Tensor, Tensor] | None] = [None] * len(self.blocks)
        if self.use_text:
            # no text and an all-padding bag both embed to zeros (FiLM then applies its bias only)
            e = self.text(text.clamp(min=0)) if text is not None and text.numel() else h.new_zeros(B, C)
            p = self.film(e).reshape(B, len(self.blocks), 2, 1, C)
            films = [(p[:, i, 0], p[:, i, 1]) for i in range(len(self.blocks))]
        for blk, f in zip(self.blocks, films):
            h = blk(h, f)
        if self.gru is not None:
            h = h + self.gru(h)[0]
        return self.out(self.norm(h))


class ResidualVQ(nn.Module):
    """Q residual vector quantizers with EMA codebooks ``[Q, K, C]`` and dead-code re-seeding.

    Codebooks are buffers updated in training mode (no gradient); the encoder gets the commitment
    loss, the decoder the straight-through quantized vectors.
    """

    def __init__(self, n_q: int, k: int, dim: int, decay: float, dead_threshold: float) -> None:
        super().__init__()
        self.n_q, self.k, self.dim, self.decay, self.dead = n_q, k, dim, decay, dead_threshold
        self.register_buffer("embed", torch.randn(n_q, k, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(n_q, k))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _init(self, z: Tensor) -> None:
        # seed every level's codebook with random latent vectors (residual scales shrink per level)
        r = z
        for q in range(self.n_q):
            idx = torch.randint(0, r.shape[0], (self.k,), device=z.device)
            self.embed[q] = r[idx]
            self.embed_sum[q] = r[idx]
            self.cluster_size[q].fill_(1.0)
            d = torch.cdist(r, self.embed[q])
            r = r - self.embed[q][d.argmin(1)]
        self.initted.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``z [N, C]`` → (quantized ``[N, C]`` straight-through, codes ``[N, Q]``, commitment loss)."""
        if self.training and not bool(self.initted):
            self._init(z.detach().float())
        residual = z
        quant = torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for q in range(self.n_q):
            emb = self.embed[q].to(z.dtype)
            d = torch.cdist(residual.detach(), emb)  # [N, K]
            idx = d.argmin(1)
            zq = emb[idx]
            loss = loss + F.mse_loss(residual, zq.detach())
            if self.training:
                self._ema_update(q, residual.detach().float(), idx)
            quant = quant + zq
            residual = residual - zq.detach()
            codes.append(idx)
        quant_st = z + (quant - z).detach()
        return quant_st, torch.stack(codes, 1), loss

    @torch.no_grad()
    def _ema_update(self, q: int, r: Tensor, idx: Tensor) -> None:
        onehot = F.one_hot(idx, self.k).type(r.dtype)  # [N, K]
        self.cluster_size[q].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        # embed_sum[k, c] = sum_n onehot[n, k] r[n, c]
        self.embed_sum[q].mul_(self.decay).add_(torch.einsum("nk,nc->kc", onehot, r), alpha=1 - self.decay)
        n = self.cluster_size[q].sum()
        size = (self.cluster_size[q] + 1e-5) / (n + self.k * 1e-5) * n
        self.embed[q] = self.embed_sum[q] / size[:, None]
        dead = self.cluster_size[q] < self.dead
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(0, r.shape[0], (n_dead,), device=r.device)
            self.embed[q][dead] = r[pick]
            self.embed_sum[q][dead] = r[pick]
            self.cluster_size[q][dead] = 1.0

    def decode(self, codes: Tensor) -> Tensor:
        """``codes [N, Q]`` → ``[N, C]``."""
        return sum(self.embed[q][codes[:, q]] for q in range(self.n_q))


class _ResBlock(nn.Module):
    """Pre-norm residual block on ``[B, T, C]`` with a centred (non-causal) kernel-3 convolution."""

    def __init__(self, c: int, dilation: int = 1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.conv = CausalConv1d(c, c, 3, dilation, causal=False)
        self.proj = nn.Linear(c, c)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(F.gelu(self.conv(self.norm(x))))


class MotionTokenizer(nn.Module):
    """Residual-VQ VAE over normalised motion ``[B, T, D]``.

    Encoder: groups of ``downsample`` frames are merged (patchified) and mapped linearly to C
    channels, residual conv blocks, a linear map to the code dimension; :class:`ResidualVQ`; the
    decoder mirrors it and splits each latent frame back into ``downsample`` motion frames. The
    linear paths make the tokenizer start close to a (PCA-like) linear autoencoder, which is what
    lets it converge in a few hundred CPU steps. ``T`` is padded (edge frames repeated) to a
    multiple of the downsampling.
    """

    def __init__(self, cfg: TokenizerConfig, d_motion: int) -> None:
        super().__init__()
        self.cfg, self.d_motion, self.down = cfg, d_motion, cfg.downsample
        c = cfg.hidden
        self.enc_in = nn.Linear(d_motion * self.down, c)
        self.enc = nn.Sequential(_ResBlock(c, 1), _ResBlock(c, 2), nn.LayerNorm(c))
        self.enc_out = nn.Linear(c, cfg.code_dim)
        self.vq = ResidualVQ(cfg.n_quantizers, cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.dead_code_threshold)
        self.dec_in = nn.Linear(cfg.code_dim, c)
        self.dec = nn.Sequential(_ResBlock(c, 1), _ResBlock(c, 2), nn.LayerNorm(c))
        self.dec_out = nn.Linear(c, d_motion * self.down)

    def _pad(self, x: Tensor) -> tuple[Tensor, int]:
        T = x.shape[1]
        p = (-T) % self.down
        return (torch.cat([x, x[:, -1:].expand(-1, p, -1)], 1) if p else x), T

    def _encode(self, x: Tensor) -> tuple[Tensor, int]:
        x, T = self._pad(x)
        B, Tp, D = x.shape
        z = self.enc_out(self.enc(self.enc_in(x.reshape(B, Tp // self.down, self.down * D))))
        return z, T  # [B, T', code_dim]

    def _decode(self, z: Tensor) -> Tensor:
        B, Tq, _ = z.shape
        return self.dec_out(self.dec(self.dec_in(z))).reshape(B, Tq * self.down, self.d_motion)

    def encode(self, x: Tensor) -> Tensor:
        """``[B, T, D]`` → codes ``[B, ceil(T/down), Q]``."""
        z, _ = self._encode(x)
        B, Tq, C = z.shape
        _, codes, _ = self.vq(z.reshape(B * Tq, C))
        return codes.reshape(B, Tq, -1)

    def decode(self, codes: Tensor, n_frames: int | None = None) -> Tensor:
        """codes ``[B, T', Q]`` → motion ``[B, T'*down, D]`` (cut to ``n_frames``)."""
        B, Tq, Q = codes.shape
        x = self._decode(self.vq.decode(codes.reshape(B * Tq, Q)).reshape(B, Tq, -1))
        return x[:, :n_frames] if n_frames is not None else x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, T, D]`` → (reconstruction ``[B, T, D]``, codes ``[B, T', Q]``, commitment loss)."""
        z, T = self._encode(x)
        B, Tq, C = z.shape
        zq, codes, commit = self.vq(z.reshape(B * Tq, C))
        rec = self._decode(zq.reshape(B, Tq, C))
        return rec[:, :T], codes.reshape(B, Tq, -1), commit
