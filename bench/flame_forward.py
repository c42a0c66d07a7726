"""FLAME layer forward throughput: full mesh vs landmark-only path, CPU (and CUDA when present).

    python bench/flame_forward.py [--model demo|flame-sized|PATH] [--batch 1 64 1024] [--dtype float32] [--grad]

``flame-sized`` is a random model with FLAME's sizes (5023 vertices, 9976 faces, 115 MediaPipe
landmarks incl. iris), to see the landmark-only path's gain at FLAME's scale without the licensed file.
Prints one JSON object: frames/s per device, path and batch size (a frame = one parameter set).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import numpy as np

from flameqa.flame import FlameLayer
from flameqa.flame.io import FlameModelData, MediaPipeEmbedding


def flame_sized_model(seed: int = 0) -> FlameModelData:
    """Random arrays with FLAME 2020's shapes (not FLAME: for timing only)."""
    rng = np.random.default_rng(seed)
    nv, nf = 5023, 9976
    w = rng.random((nv, 5)).astype(np.float32) ** 4
    w /= w.sum(1, keepdims=True)
    jreg = np.zeros((5, nv), np.float32)
    for j in range(5):
        jreg[j, rng.choice(nv, 20, replace=False)] = 1 / 20
    faces = rng.integers(0, nv, (nf, 3))
    return FlameModelData(
        v_template=(0.1 * rng.standard_normal((nv, 3))).astype(np.float32),
        shapedirs=(1e-3 * rng.standard_normal((nv, 3, 400))).astype(np.float32),
        posedirs=(1e-3 * rng.standard_normal((nv, 3, 36))).astype(np.float32),
        j_regressor=jreg,
        weights=w,
        parents=(-1, 0, 1, 1, 1),
        faces=faces,
        n_shape_file=300,
        model_id="random-flame-sized",
        mediapipe=MediaPipeEmbedding(
            face_idx=rng.integers(0, nf, 115), bary=np.full((115, 3), 1 / 3, np.float32), mp_indices=np.arange(115)
        ),
    )


def _rate(fn, batch: int, device: str, min_time: float) -> float:
    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    fn()  # warm-up (allocations, kernels)
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        dt = time.perf_counter() - t0
        if dt >= min_time and n >= 3:
            return n * batch / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64, 1024])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--n-shape", type=int, default=300)
    ap.add_argument("--n-expr", type=int, default=100)
    ap.add_argument("--grad", action="store_true", help="time forward + backward (what a gradient fitter pays)")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.model == "flame-sized":
        base = FlameLayer(flame_sized_model(), n_shape=args.n_shape, n_expr=args.n_expr, dtype=dtype)
    else:
        base = FlameLayer.from_file(args.model, n_shape=args.n_shape, n_expr=args.n_expr, dtype=dtype)
    result: dict = {
        "model_id": base.model_id,
        "n_vertices": base.n_vertices,
        "n_landmarks": base.n_landmarks,
        "n_landmark_vertices": int(base.lmk_vertex_ids.numel()),
        "n_shape": args.n_shape,
        "n_expr": args.n_expr,
        "dtype": args.dtype,
        "grad": args.grad,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "frames_per_s": {},
    }
    for device in devices:
        layer = base.to(device)
        if device == "cuda":
            result["cuda_device"] = torch.cuda.get_device_name()
        per_dev: dict = {}
        for b in args.batch:
            g = torch.Generator(device=device).manual_seed(0)
            kw = {"generator": g, "dtype": dtype, "device": device}
            p = {
                "shape": torch.randn(b, args.n_shape, **kw),
                "expression": torch.randn(b, args.n_expr, **kw),
                "pose": 0.2 * torch.randn(b, 15, **kw),
                "transl": torch.randn(b, 3, **kw),
            }
            if args.grad:
                p = {k: v.requires_grad_(True) for k, v in p.items()}

            def full() -> None:
                out = layer(**p)
                if args.grad:
                    out.vertices.sum().backward()

            def lmk() -> None:
                out = layer.landmarks_only(**p)
                if args.grad:
                    out.sum().backward()

            with torch.set_grad_enabled(args.grad):
                per_dev[str(b)] = {
                    "full_mesh": round(_rate(full, b, device, args.min_time), 1),
                    "landmarks_only": round(_rate(lmk, b, device, args.min_time), 1),
                }
        result["frames_per_s"][device] = per_dev
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
