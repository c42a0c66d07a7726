"""Write notebooks/*.ipynb (kept as code here so their cells are reviewed like code).

The notebooks import flameqa and hold no stage logic. Paths come from the environment:
FLAMEQA_DATASET (an exported dataset folder or a Hub repo id) and FLAMEQA_RUN (a pipeline OUT).
"""

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1]

SETUP = """import os
from pathlib import Path
DATASET = os.environ.get("FLAMEQA_DATASET", "../demo_out/export")   # export folder or hub repo id
RUN = os.environ.get("FLAMEQA_RUN", "../demo_out/run")              # pipeline output (for overlays)"""

INSPECT = [
    ("md", "# Inspect FLAME-QA samples\nBrowse one sample: question, answer, audio, the fitted face over the video, and parameter curves with word boundaries. Set `FLAMEQA_DATASET` / `FLAMEQA_RUN` or edit the paths below."),
    ("code", SETUP),
    ("code", """import datasets
ds = datasets.load_dataset(DATASET)
# keep audio as wav bytes: decoding needs torchcodec, which many environments lack; soundfile reads the bytes
for name in ("answer_audio", "question_audio"):
    ds = ds.cast_column(name, datasets.Audio(decode=False))
print(ds)
split = next(iter(ds))
ds[split].features["expression"], ds[split].features["answer_audio"]"""),
    ("code", """s = ds[split].with_format("numpy")[0]
print("sample:", s["sample_id"], "| mode:", s["mode"], "| question source:", s["question_source"])
print("Q:", s["question_text"])
print("A:", s["answer_text"])
print("answer words:", [(w["word"], round(float(w["start_s"]), 2)) for w in ds[split][0]["answer_words"]][:12])"""),
    ("code", """import io, soundfile as sf
from IPython.display import Audio, display
raw = ds[split][0]["answer_audio"]["bytes"]
wav, sr = sf.read(io.BytesIO(raw))
display(Audio(wav, rate=sr))"""),
    ("code", """import matplotlib.pyplot as plt
from flameqa.render.video import sample_frames
if Path(RUN).exists():
    frames = sample_frames(RUN, ds[split][0]["sample_id"], n=3)
    fig, axes = plt.subplots(1, len(frames), figsize=(6 * len(frames), 3))
    for ax, f in zip(list(axes) if len(frames) > 1 else [axes], frames):
        ax.imshow(f); ax.axis("off")
    plt.show()
else:
    print("no pipeline output at", RUN, "- overlays need the run folder")"""),
    ("code", """import numpy as np
fps = float(s["fps"])
expr, jaw = np.stack(s["expression"]), np.stack(s["jaw"])
t = np.arange(len(jaw)) / fps
fig, ax = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
ax[0].plot(t, jaw[:, 0], label="jaw open (rad)"); ax[0].legend()
for k in range(4):
    ax[1].plot(t, expr[:, k], label=f"expression {k}")
ax[1].legend(ncol=4); ax[1].set_xlabel("seconds from answer start")
for w in ds[split][0]["answer_words"]:
    for a in ax:
        a.axvline(w["start_s"], color="grey", lw=0.5)
ax[0].set_title("parameters over the answer; grey lines = word onsets")
plt.show()"""),
]

QC = [
    ("md", "# Quality of a FLAME-QA dataset\nDistributions of the per-sample quality metrics and the worst samples."),
    ("code", SETUP),
    ("code", """import datasets, pandas as pd
ds = datasets.load_dataset(DATASET)
cols = ["sample_id", "mode", "identity", "duration_s", "face_visible_ratio", "nme_mean", "nme_max", "overlap_ratio", "asr_prob_mean"]
df = pd.concat([d.select_columns(cols).to_pandas().assign(split=name) for name, d in ds.items()], ignore_index=True)
df.describe()"""),
    ("code", """import matplotlib.pyplot as plt
fig, axes = plt.subplots(2, 3, figsize=(12, 6))
for ax, c in zip(axes.flat, cols[3:]):
    ax.hist(df[c].dropna(), bins=20); ax.set_title(c)
plt.tight_layout(); plt.show()"""),
    ("code", """print(df.groupby(["split", "mode"]).size())
print("identities per split:", df.groupby("split")["identity"].nunique().to_dict())
df.sort_values("nme_mean", ascending=False).head(10)"""),
    ("code", """from flameqa.inspect import summarize, format_summary
if Path(RUN).exists():
    print(format_summary(summarize(RUN)))"""),
]


def write(cells, path: Path) -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    nbf.write(nb, path)


if __name__ == "__main__":
    write(INSPECT, ROOT / "notebooks" / "inspect_samples.ipynb")
    write(QC, ROOT / "notebooks" / "qc.ipynb")
