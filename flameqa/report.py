"""QC report: one self-contained HTML file (plots and thumbnails embedded as base64 PNG).

Sections appear for the tables that exist: counts per stage and status, failure reasons, duration /
speaker / identity histograms, fit NME and jitter distributions, and the worst samples with
thumbnails of their source frames.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from flameqa.inspect import summarize
from flameqa.io import shards as sh

log = logging.getLogger(__name__)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img_png(img: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _hist(values, title: str, xlabel: str, bins: int = 30) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.hist(v, bins=bins, color="#4a7fb5")
    ax.set_title(f"{title} (n={v.size}, median={np.median(v):.3g})", fontsize=9)
    ax.set_xlabel(xlabel)
    return _png(fig)


def _bar(counts: dict[str, int], title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not counts:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3))
    keys = list(counts)
    ax.barh(keys, [counts[k] for k in keys], color="#4a7fb5")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _thumb(path: str, t: float, width: int = 200) -> str | None:
    try:
        from flameqa.io.media import iter_frames
        import cv2

        for _, _, img in iter_frames(path, fps=25, start_s=max(0.0, t), end_s=t + 0.04):
            h, w = img.shape[:2]
            return _img_png(cv2.resize(img, (width, int(h * width / w))))
    except Exception as e:  # noqa: BLE001 - a missing thumbnail must not stop the report
        log.warning("no thumbnail for %s at %.2fs: %s", path, t, e)
    return None


def build_report(out: str | os.PathLike, dest: str | os.PathLike | None = None, worst: int = 10) -> Path:
    """Write ``dest`` (default ``OUT/report.html``) and return its path."""
    out = Path(out)
    dest = Path(dest) if dest else out / "report.html"
    summary = summarize(out)
    parts: list[str] = [f"<h1>flameqa QC report</h1><p>{html.escape(str(out))}</p>"]
    # counts
    rows = "".join(
        f"<tr><td>{t}</td><td>{i['rows']}</td><td>{i['shards']}</td><td>{html.escape(', '.join(f'{k}={v}' for k, v in sorted(i['status'].items())))}</td></tr>"
        for t, i in summary.items()
    )
    parts.append(f"<h2>Tables</h2><table><tr><th>table</th><th>rows</th><th>shards</th><th>status</th></tr>{rows}</table>")
    fails = [(t, r, n) for t, i in summary.items() for r, n in i["errors"].items()]
    rej = [(t, r, n) for t, i in summary.items() for r, n in i.get("rejected", {}).items()]
    if fails or rej:
        items = "".join(f"<tr><td>{t}</td><td>{html.escape(r)}</td><td>{n}</td></tr>" for t, r, n in sorted(fails + rej, key=lambda x: -x[2]))
        parts.append(f"<h2>Failures and rejections</h2><table><tr><th>table</th><th>reason</th><th>count</th></tr>{items}</table>")
    figs: list[str | None] = []
    if "speech" in summary:
        sp = sh.read_table(out, "speech").to_pylist()
        figs.append(_hist([r["end_s"] - r["start_s"] for r in sp if r["start_s"] is not None], "speech turn duration", "s"))
        per_clip: dict[str, set] = {}
        for r in sp:
            if r["speaker"]:
                per_clip.setdefault(r["clip_id"], set()).add(r["speaker"])
        figs.append(_hist([len(s) for s in per_clip.values()], "speakers per clip", "speakers", bins=10))
    if "flame" in summary:
        fl = sh.read_table(out, "flame", columns=["nme", "jitter_ratio", "fit_rmse_px"])
        nme = np.concatenate([np.asarray(x, np.float64) for x in fl.column("nme").to_pylist() if x]) if fl.num_rows else []
        figs.append(_hist(100 * np.asarray(nme), "fit NME per frame", "% of inter-ocular distance"))
        figs.append(_hist(fl.column("jitter_ratio").to_pylist(), "jitter ratio per segment (fit / raw)", "ratio"))
    samples = sh.read_table(out, "samples").to_pylist() if "samples" in summary else []
    if samples:
        for r in samples:
            r.pop("answer_audio", None)
            r.pop("question_audio", None)
        figs.append(_hist([r["duration_s"] for r in samples], "sample answer duration", "s"))
        ids: dict[str, int] = {}
        for r in samples:
            ids[r["identity"]] = ids.get(r["identity"], 0) + 1
        figs.append(_bar(dict(sorted(ids.items(), key=lambda kv: -kv[1])[:20]), "samples per identity"))
    imgs = "".join(f'<img src="{f}">' for f in figs if f)
    if imgs:
        parts.append(f"<h2>Distributions</h2><div>{imgs}</div>")
    if samples:
        clips = {r["clip_id"]: r for r in sh.read_table(out, "clips", columns=["clip_id", "path"]).to_pylist()} if "clips" in summary else {}
        bad = sorted(samples, key=lambda r: -(r.get("nme_mean") or 0))[:worst]
        cells = []
        for r in bad:
            path = clips.get(r["clip_id"], {}).get("path")
            th = _thumb(path, (r["answer_start_s"] + r["answer_end_s"]) / 2) if path else None
            img = f'<img src="{th}">' if th else ""
            cells.append(
                f"<tr><td>{img}</td><td><b>{html.escape(r['sample_id'])}</b><br>Q: {html.escape(r['question_text'])}<br>"
                f"A: {html.escape(r['answer_text'])}<br>NME {100 * (r.get('nme_mean') or 0):.2f} % (max {100 * (r.get('nme_max') or 0):.2f} %), "
                f"face visible {100 * (r.get('face_visible_ratio') or 0):.0f} %, {r['duration_s']:.1f} s</td></tr>"
            )
        parts.append(f"<h2>Worst {len(bad)} samples by fit NME</h2><table>{''.join(cells)}</table>")
    css = "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px;vertical-align:top} img{margin:4px}"
    doc = f"<!doctype html><html><head><meta charset='utf-8'><title>flameqa report</title><style>{css}</style></head><body>{''.join(parts)}</body></html>"
    sh.atomic_write_bytes(dest, doc.encode())
    return dest
