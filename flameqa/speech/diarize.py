"""Speaker diarization: who speaks when.

Default (``embeddings``): VAD speech spans → resemblyzer d-vectors (256-d, from 1 s windows every
0.25 s) → clustering (spectral on a pruned cosine affinity; the speaker count is given, or grown
while every pair of clusters has clearly different mean voices, or two when a split of similar
voices shows turn-taking) → Viterbi re-segmentation against the speaker centroids → turns.
Optional ``pyannote`` backend (pyannote.audio pipeline) with the same :class:`Turn` output.

The clustering and turn-building functions are pure numpy (no I/O); the encoder classes hold models.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from flameqa.speech.audio import SAMPLE_RATE
from flameqa.speech.config import DiarizationConfig
from flameqa.speech.vad import Span

log = logging.getLogger(__name__)

EMBED_DIM = 256


@dataclass
class Turn:
    speaker: str
    start_s: float
    end_s: float
    overlap: bool = False
    """Another speaker's turn intersects this one."""
    core: list[Span] = field(default_factory=list)
    """Parts of the turn where this speaker alone was detected (word assignment prefers these)."""
    embedding: np.ndarray | None = None
    """Mean d-vector of the turn, shape (256,), L2-normalised; None when not computed."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# ---------------------------------------------------------------------------------------------
# the d-vector encoder (resemblyzer's weights; mel computed with torch, identical to its librosa path)


class SpeakerEncoder:
    """resemblyzer's VoiceEncoder (LSTM d-vectors; weights ship in the wheel).

    resemblyzer computes its 40-band mel with librosa, whose first call compiles numba code for
    ~20 s; the same power mel (n_fft 400, hop 160, Hann, centred, zero padded, Slaney mel) is
    computed here with torch, and only the filter bank comes from librosa (plain numpy).
    """

    N_FFT = 400
    HOP = 160
    N_MELS = 40
    TARGET_DBFS = -30.0

    def __init__(self, device: str = "cpu") -> None:
        import torch
        from librosa.filters import mel
        from resemblyzer import VoiceEncoder

        self.torch = torch
        self.device = torch.device(device)
        self.model = VoiceEncoder(device=self.device, verbose=False).eval()
        self.fb = torch.from_numpy(mel(sr=SAMPLE_RATE, n_fft=self.N_FFT, n_mels=self.N_MELS)).float().to(self.device)
        self.window = torch.hann_window(self.N_FFT, periodic=True, device=self.device)

    def mel(self, x: "torch.Tensor") -> "torch.Tensor":
        """(B, N) samples → (B, frames, 40) power mel, as resemblyzer.audio.wav_to_mel_spectrogram."""
        torch = self.torch
        x = torch.nn.functional.pad(x, (self.N_FFT // 2, self.N_FFT // 2))  # librosa center=True, pad_mode="constant"
        spec = torch.stft(x, self.N_FFT, self.HOP, window=self.window, center=False, return_complex=True).abs() ** 2
        # (n_mels, n_freq) @ (B, n_freq, frames) → (B, n_mels, frames)
        return torch.matmul(self.fb, spec).transpose(1, 2)

    def embed(self, windows: np.ndarray, batch: int = 64) -> np.ndarray:
        """d-vectors of equal-length windows: (W, N) float32 16 kHz → (W, 256), L2-normalised."""
        torch = self.torch
        if len(windows) == 0:
            return np.zeros((0, EMBED_DIM), np.float32)
        x = np.asarray(windows, np.float32)
        # resemblyzer normalises each utterance to -30 dBFS (raise only) before its mel
        rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True)) + 1e-12
        gain = np.maximum(1.0, 10 ** (self.TARGET_DBFS / 20) / rms)
        x = (x * gain).astype(np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                xb = torch.from_numpy(x[i : i + batch]).to(self.device)
                out.append(self.model(self.mel(xb)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# windows


@dataclass(frozen=True)
class EmbWindow:
    start_s: float
    end_s: float
    span: int
    """Index of the VAD span (clip-wide) the window belongs to."""
    lo: float
    hi: float
    """The part of the window inside its span: what the window's label speaks for."""

    @property
    def centre(self) -> float:
        return (self.lo + self.hi) / 2


def embedding_windows(spans: Sequence[Span], win_s: float, hop_s: float, span_offset: int = 0) -> list[EmbWindow]:
    """Sliding windows over each span: spans shorter than ``win_s`` get one window centred on them."""
    out = []
    for k, (s, e) in enumerate(spans):
        if e - s <= win_s:
            c = (s + e) / 2
            out.append(EmbWindow(max(0.0, c - win_s / 2), max(0.0, c - win_s / 2) + win_s, span_offset + k, s, e))
            continue
        n = int(np.floor((e - s - win_s) / hop_s + 1e-9)) + 1
        starts = [s + i * hop_s for i in range(n)]
        if starts[-1] + win_s < e - 1e-3:
            starts.append(e - win_s)  # cover the tail
        for i, t in enumerate(starts):
            # a window speaks for the hop around its centre (the span's ends for the first/last)
            lo = s if i == 0 else (starts[i - 1] + t) / 2 + win_s / 2
            hi = e if i == len(starts) - 1 else (t + starts[i + 1]) / 2 + win_s / 2
            out.append(EmbWindow(t, t + win_s, span_offset + k, lo, hi))
    return out


# ---------------------------------------------------------------------------------------------
# clustering (pure numpy)


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pruned_affinity(X: np.ndarray, pruning: float) -> np.ndarray:
    """Cosine affinity of unit rows X (W, D), refined as for d-vector spectral clustering
    (Wang et al. 2018): clip negatives, damp each row below its ``pruning`` quantile, symmetrise."""
    S = np.clip(X @ X.T, 0.0, None)
    if 0 < pruning < 1 and len(S) > 4:
        thr = np.quantile(S, pruning, axis=1, keepdims=True)
        S = np.where(S >= thr, S, 0.01 * S)
    S = (S + S.T) / 2
    np.fill_diagonal(S, 1.0)
    return S


def _cluster_k(X: np.ndarray, k: int, method: str, pruning: float) -> np.ndarray:
    if k <= 1 or len(X) <= k:
        return np.zeros(len(X), int) if k <= 1 else np.arange(len(X))
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        return AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit(X).labels_
    from sklearn.cluster import SpectralClustering

    A = pruned_affinity(X, pruning)
    with warnings.catch_warnings():
        # clipping negative cosines leaves clearly different voices unconnected: the components
        # are then the clusters, which is what the embedding should find, not a fault to log
        # (sklearn warned 4 times per minute of two-speaker speech)
        warnings.filterwarnings("ignore", message="Graph is not fully connected", category=UserWarning)
        return SpectralClustering(n_clusters=k, affinity="precomputed", random_state=0, assign_labels="kmeans", n_init=10).fit(A).labels_


def cluster_speakers(E: np.ndarray, num_speakers: int | None, cfg: DiarizationConfig, windows: Sequence[EmbWindow] | None = None) -> np.ndarray:
    """Speaker label per d-vector row of E (W, 256). Labels are 0..K-1.

    Rows are centred (the clip-wide mean carries channel and room, not identity) and clustered.
    Estimating the count (``num_speakers`` None):

    1. k grows while every pair of the k clusters has mean d-vectors less alike than
       ``cfg.distinct_voice_similarity`` (clearly different voices: no more evidence needed);
    2. if no two clusters are that different, two speakers are still accepted when the 2-way split
       shows turn-taking (:func:`turn_taking_split`; needs ``windows``, the rows' time windows);
    3. otherwise one speaker.
    """
    n = len(E)
    if n == 0:
        return np.zeros(0, int)
    if num_speakers == 1 or n < 3:
        return np.zeros(n, int)
    Xc = l2n(E - E.mean(0))
    if num_speakers is None:
        best = np.zeros(n, int)
        for k in range(2, min(cfg.max_speakers, n - 1) + 1):
            lab = _cluster_k(Xc, k, cfg.clustering, cfg.pruning)
            counts = np.bincount(lab, minlength=k)
            if counts.min() < 2:
                break
            sim = float(np.max(centroid_similarity(E, lab) - 2 * np.eye(k)))
            log.debug("k=%d: most alike centroids cosine %.3f (distinct below %.3f)", k, sim, cfg.distinct_voice_similarity)
            if sim > cfg.distinct_voice_similarity:
                break
            best = lab
        if best.max() == 0 and windows is not None and cfg.max_speakers >= 2:
            two = turn_taking_split(E, windows, cfg)
            if two is not None:
                best = two
        if best.max() + 1 >= max(1, cfg.min_speakers):
            return best
        k = cfg.min_speakers
    else:
        k = num_speakers
    return _cluster_k(Xc, min(k, n), cfg.clustering, cfg.pruning)


def centroid_similarity(E: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, K) cosine similarity of the clusters' mean raw d-vectors (labels 0..K-1, none empty)."""
    C = l2n(np.stack([E[labels == j].mean(0) for j in range(int(labels.max()) + 1)]))
    return C @ C.T


def speaker_changes(windows: Sequence[EmbWindow], labels: np.ndarray, min_run_s: float) -> int:
    """How often the label changes along time between runs of one label lasting ``min_run_s`` or more.

    A run is everything a label holds until another label speaks, pauses included, measured from
    its first to its last labelled second (so an evenly subsampled clip measures the same); shorter
    runs (blips of a window or two) are ignored, so A, blip B, A is one run of A.
    """
    runs: list[list] = []  # [label, start_s, end_s]
    for lab, s, e in labelled_segments(windows, labels):
        if runs and runs[-1][0] == lab:
            runs[-1][2] = max(runs[-1][2], e)
        else:
            runs.append([lab, s, e])
    kept = [lab for lab, s, e in runs if e - s >= min_run_s]
    return sum(a != b for a, b in zip(kept, kept[1:]))


def turn_taking_split(E: np.ndarray, windows: Sequence[EmbWindow], cfg: DiarizationConfig) -> np.ndarray | None:
    """Labels of a 2-speaker split of E (W, 256) when it looks like a conversation, else None.

    d-vectors alone cannot tell two similar voices (AMI's far-field pair: centroid cosine 0.86)
    from one voice split by drift or sentence content (0.80-0.91 measured). Time can: a voice
    that drifts or changes register once splits into one or two long runs (A B, A B A), while a
    conversation hands the floor back and forth. So the split (re-segmented as the final labels
    are) counts as two speakers when its centroids are no more alike than
    ``cfg.turn_taking_similarity`` and the voice changes at least ``cfg.min_speaker_changes``
    times between runs of ``cfg.turn_taking_min_run_s`` or longer (A B A B: both voices come back).
    Its blind spot: one voice that goes back and forth between two registers looks the same.
    """
    if len(E) < 4:
        return None
    lab = _cluster_k(l2n(E - E.mean(0)), 2, cfg.clustering, cfg.pruning)
    lab = resegment(E, lab, windows, cfg)
    if lab.max() < 1:
        return None
    sim = float(centroid_similarity(E, lab)[0, 1])
    changes = speaker_changes(windows, lab, cfg.turn_taking_min_run_s)
    ok = sim <= cfg.turn_taking_similarity and changes >= cfg.min_speaker_changes
    log.debug("2-way split: centroid cosine %.3f (two voices at most %.3f), %d changes (need %d): %s", sim, cfg.turn_taking_similarity, changes, cfg.min_speaker_changes, "two speakers" if ok else "one")
    return lab if ok else None


def viterbi_labels(sim: np.ndarray, switch_cost: np.ndarray) -> np.ndarray:
    """Best label path for scores ``sim`` (T, K) where changing label between t-1 and t costs ``switch_cost[t]``."""
    T, K = sim.shape
    if T == 0:
        return np.zeros(0, int)
    dp = sim[0].copy()
    back = np.zeros((T, K), int)
    off = 1.0 - np.eye(K)
    for t in range(1, T):
        cand = dp[:, None] - switch_cost[t] * off  # [from, to]
        back[t] = cand.argmax(0)
        dp = cand.max(0) + sim[t]
    path = np.empty(T, int)
    path[-1] = int(dp.argmax())
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def resegment(E: np.ndarray, labels: np.ndarray, windows: Sequence[EmbWindow], cfg: DiarizationConfig) -> np.ndarray:
    """Re-assign windows to speaker centroids with a switching cost (smooths isolated flips)."""
    K = int(labels.max()) + 1 if len(labels) else 0
    if K <= 1:
        return labels
    X = l2n(E - E.mean(0))
    cost = np.full(len(windows), cfg.switch_penalty)
    for t in range(1, len(windows)):
        if windows[t].span != windows[t - 1].span:
            # across a pause a change of speaker is likelier: half the cost, none after 2 s
            gap = windows[t].lo - windows[t - 1].hi
            cost[t] = 0.0 if gap > 2.0 else cfg.switch_penalty / 2
    lab = labels.copy()
    for _ in range(cfg.resegment_iterations):
        C = np.stack([l2n(X[lab == k].mean(0)) if (lab == k).any() else np.zeros(X.shape[1]) for k in range(K)])
        new = viterbi_labels(X @ C.T, cost)
        if np.array_equal(new, lab):
            break
        lab = new
    # relabel densely in order of first appearance
    order = {old: i for i, old in enumerate(dict.fromkeys(lab.tolist()))}
    return np.array([order[v] for v in lab.tolist()], int)


# ---------------------------------------------------------------------------------------------
# turns (pure)


def labelled_segments(windows: Sequence[EmbWindow], labels: np.ndarray) -> list[tuple[int, float, float]]:
    """(label, start_s, end_s) runs: each window labels the part of its span it speaks for."""
    segs: list[list] = []
    for w, lab in sorted(zip(windows, labels.tolist()), key=lambda p: (p[0].lo, p[0].hi)):
        if segs and segs[-1][0] == lab and w.lo - segs[-1][2] <= 1e-6:
            segs[-1][2] = max(segs[-1][2], w.hi)
        else:
            segs.append([lab, w.lo, w.hi])
    return [(int(a), float(b), float(c)) for a, b, c in segs]


def build_turns(segs: Sequence[tuple[int, float, float]], cfg: DiarizationConfig) -> list[Turn]:
    """Speaker runs → turns: absorb blips, join same-speaker pauses, keep short interjections as overlaps."""
    runs = [list(s) for s in sorted(segs, key=lambda s: s[1])]
    # 1. a run shorter than min_turn_s that touches a neighbour takes the neighbour's speaker
    for i, r in enumerate(runs):
        if r[2] - r[1] < cfg.min_turn_s and len(runs) > 1:
            prev = runs[i - 1] if i > 0 and r[1] - runs[i - 1][2] < 0.05 else None
            nxt = runs[i + 1] if i + 1 < len(runs) and runs[i + 1][1] - r[2] < 0.05 else None
            nb = max((x for x in (prev, nxt) if x is not None), key=lambda x: x[2] - x[1], default=None)
            if nb is not None:
                r[0] = nb[0]
    # 2. join same-speaker runs across short pauses (core spans kept)
    turns: list[Turn] = []
    for lab, s, e in runs:
        if turns and turns[-1].speaker == lab and s - turns[-1].end_s <= cfg.merge_gap_s:
            turns[-1].end_s = max(turns[-1].end_s, e)
            turns[-1].core.append((s, e))
        else:
            turns.append(Turn(speaker=lab, start_s=s, end_s=e, core=[(s, e)]))
    # 3. A, short B, A again within a pause-free stretch: A keeps talking over B's interjection
    i = 1
    while i + 1 < len(turns):
        a, b, c = turns[i - 1], turns[i], turns[i + 1]
        if (
            a.speaker == c.speaker
            and b.speaker != a.speaker
            and b.duration_s <= cfg.max_interjection_s
            and c.start_s - a.end_s <= cfg.max_interjection_s + cfg.merge_gap_s
        ):
            a.end_s = c.end_s
            a.core.extend(c.core)
            del turns[i + 1]
            i += 1  # b stays inside a; move on past it
        else:
            i += 1
    turns.sort(key=lambda t: (t.start_s, t.end_s))
    for t in turns:
        t.overlap = any(o is not t and o.speaker != t.speaker and o.start_s < t.end_s and t.start_s < o.end_s for o in turns)
    return turns


def name_speakers(turns: list[Turn]) -> list[Turn]:
    """Integer labels → ``SPK0``, ``SPK1``... in order of first speech."""
    names: dict = {}
    for t in sorted(turns, key=lambda t: t.start_s):
        if t.speaker not in names:
            names[t.speaker] = f"SPK{len(names)}"
    for t in turns:
        t.speaker = names[t.speaker]
    return turns


# ---------------------------------------------------------------------------------------------
# diarizers


class EmbeddingDiarizer:
    """VAD spans + resemblyzer d-vectors + clustering. Feed audio window by window, then ``finish``."""

    name = "embeddings"

    def __init__(self, config: DiarizationConfig | None = None, device: str = "cpu") -> None:
        self.config = config or DiarizationConfig()
        self.encoder = SpeakerEncoder(device="cpu" if device == "auto" else device)
        self.reset()

    def reset(self) -> None:
        self.windows: list[EmbWindow] = []
        self.embeddings: list[np.ndarray] = []
        self._spans = 0

    def add(self, audio: np.ndarray, offset_s: float, spans: Sequence[Span]) -> None:
        """Embed windows over ``spans`` (seconds, absolute) of ``audio`` that starts at ``offset_s``."""
        c = self.config
        wins = embedding_windows(spans, c.window_s, c.hop_s, span_offset=self._spans)
        self._spans += len(spans)
        n = int(round(c.window_s * SAMPLE_RATE))
        batch = np.zeros((len(wins), n), np.float32)
        for i, w in enumerate(wins):
            a = int(round((w.start_s - offset_s) * SAMPLE_RATE))
            seg = audio[max(0, a) : max(0, a) + n]
            batch[i, : len(seg)] = seg
        self.windows.extend(wins)
        self.embeddings.append(self.encoder.embed(batch))

    def finish(self, num_speakers: int | None = None) -> list[Turn]:
        """Cluster everything added since ``reset`` into turns (then resets)."""
        c = self.config
        wins = self.windows
        E = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, EMBED_DIM), np.float32)
        self.reset()
        if not wins:
            return []
        if len(wins) > c.max_cluster_windows:
            # cluster an even subsample, give every window its nearest centroid (bounded O(W²) affinity)
            idx = np.linspace(0, len(wins) - 1, c.max_cluster_windows).round().astype(int)
            sub = cluster_speakers(E[idx], num_speakers, c, [wins[i] for i in idx])
            Xc = l2n(E - E[idx].mean(0))
            C = np.stack([l2n(Xc[idx][sub == k].mean(0)) for k in range(int(sub.max()) + 1)])
            labels = (Xc @ C.T).argmax(1)
        else:
            labels = cluster_speakers(E, num_speakers, c, wins)
        labels = resegment(E, labels, wins, c)
        turns = build_turns(labelled_segments(wins, labels), c)
        Xr = l2n(E)
        centres = np.array([w.centre for w in wins])
        for t in turns:
            m = np.zeros(len(wins), bool)
            for s, e in t.core:
                m |= (centres >= s) & (centres <= e)
            m &= labels == t.speaker
            if m.any():
                t.embedding = l2n(Xr[m].mean(0)).astype(np.float32)
        return name_speakers(turns)


class SingleSpeakerDiarizer:
    """``diarization_backend: none``: every speech span belongs to one speaker."""

    name = "none"

    def __init__(self, config: DiarizationConfig | None = None) -> None:
        self.config = config or DiarizationConfig()
        self.spans: list[Span] = []

    def add(self, audio: np.ndarray, offset_s: float, spans: Sequence[Span]) -> None:
        self.spans.extend(spans)

    def finish(self, num_speakers: int | None = None) -> list[Turn]:
        segs = [(0, s, e) for s, e in self.spans]
        self.spans = []
        return name_speakers(build_turns(segs, self.config))


class PyannoteDiarizer:
    """pyannote.audio pipeline (optional extra). Needs the whole clip's audio at once."""

    name = "pyannote"

    def __init__(self, config: DiarizationConfig | None = None, device: str = "cpu") -> None:
        # pyannote sends usage telemetry unless told not to
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
        self.config = config or DiarizationConfig()
        try:
            from pyannote.audio import Pipeline
        except ImportError as e:
            raise _pyannote_missing(e) from e
        import torch

        src = self.config.pyannote_pipeline
        p = os.path.expanduser(src)
        if os.path.isdir(p):
            p = os.path.join(p, "config.yaml")
        token = os.environ.get(self.config.hf_token_env)
        source = p if os.path.exists(p) else src
        try:
            pipe = Pipeline.from_pretrained(source, token=token)  # pyannote.audio ≥ 4
        except TypeError:
            pipe = Pipeline.from_pretrained(source, use_auth_token=token)  # 3.x
        if pipe is None:
            raise RuntimeError(
                f"pyannote could not load {source!r}: a gated hub model needs ${self.config.hf_token_env} and accepted "
                "terms, or point speech.diarization.pyannote_pipeline at a local pipeline folder"
            )
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        pipe.to(torch.device(dev))
        self.pipeline = pipe
        self.torch = torch
        self._audio: list[tuple[float, np.ndarray]] = []

    def diarize(self, audio: np.ndarray, offset_s: float = 0.0, num_speakers: int | None = None) -> list[Turn]:
        kw = {"num_speakers": num_speakers} if num_speakers else {"min_speakers": self.config.min_speakers, "max_speakers": self.config.max_speakers}
        # a waveform dict, never a path: pyannote's file decoding needs torchcodec
        out = self.pipeline({"waveform": self.torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None], "sample_rate": SAMPLE_RATE}, **kw)
        ann = getattr(out, "speaker_diarization", out)
        segs = [(str(lab), offset_s + seg.start, offset_s + seg.end) for seg, _, lab in ann.itertracks(yield_label=True)]
        return annotation_turns(segs)


def annotation_turns(segs: Sequence[tuple[str, float, float]]) -> list[Turn]:
    """Labelled (possibly overlapping) segments → turns with overlap flags, speakers renamed SPKn."""
    turns = [Turn(speaker=lab, start_s=s, end_s=e, core=[(s, e)]) for lab, s, e in sorted(segs, key=lambda x: x[1])]
    for t in turns:
        t.overlap = any(o is not t and o.speaker != t.speaker and o.start_s < t.end_s and t.start_s < o.end_s for o in turns)
    return name_speakers(turns)


def _pyannote_missing(e: Exception) -> ImportError:
    from flameqa.speech.asr import BackendUnavailable

    return BackendUnavailable(
        f"the pyannote diarization backend needs `pyannote.audio`, which is not installed ({e}). "
        "Install `pip install 'flameqa[pyannote]'` with a pip constraint pinning your torch build (it pulls torchaudio "
        "and torchcodec builds that may not import beside CPU torch), set PYANNOTE_METRICS_ENABLED=0, and give it "
        "a local pipeline folder or an HF token for the gated models. Or use speech.diarization_backend=embeddings."
    )
