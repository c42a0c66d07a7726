"""Real-time factor of the speech stage per ASR model on this machine; prints JSON.

    .venv/bin/python bench/speech_rtf.py [--audio FILE] [--minutes 2] [--model whisper-tiny.en ...]
"""

from __future__ import annotations

import argparse
import json
import logging


def main() -> None:
    from flameqa.speech.bench import bench_rtf

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", default=None, help="recording to loop (default: synthetic espeak-ng dialogue)")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--compute-type", default="auto")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = bench_rtf(a.audio, a.model or ["whisper-tiny.en", "whisper-base"], a.minutes * 60, a.compute_type)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
