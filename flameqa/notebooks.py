"""Execute the shipped notebooks headless (nbclient) on an exported dataset and a run folder."""

from __future__ import annotations

import os
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute_notebooks(dataset: str | os.PathLike, run: str | os.PathLike, dest: str | os.PathLike, timeout: int = 600) -> dict[str, Path]:
    """Run every ``notebooks/*.ipynb`` with FLAMEQA_DATASET/FLAMEQA_RUN set; save executed copies in
    ``dest``. Raises ``nbclient.exceptions.CellExecutionError`` naming the failing cell."""
    import nbformat
    from nbclient import NotebookClient

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    env_before = {k: os.environ.get(k) for k in ("FLAMEQA_DATASET", "FLAMEQA_RUN", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "MPLBACKEND")}
    os.environ.update(FLAMEQA_DATASET=str(Path(dataset).resolve()), FLAMEQA_RUN=str(Path(run).resolve()), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    out = {}
    try:
        for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
            nb = nbformat.read(nb_path, as_version=4)
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(dest)}}).execute()
            target = dest / nb_path.name
            nbformat.write(nb, target)
            out[nb_path.stem] = target
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out
