"""Rendering throughput on CPU: the demo head rasterized at 512×512 (frontal shaded view and an
overlay on a video-sized frame). Prints JSON. Goal (issue 7): ≥ 25 fps at 512×512 on CPU."""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np


def main() -> None:
    from flameqa.render.raster import draw_mesh, frontal_view
    from flameqa.render.video import load_layer, mesh_sequence

    layer = load_layer("demo", 100)
    T = 100
    rng = np.random.default_rng(0)
    params = {"expression": rng.normal(0, 0.3, (T, 100)), "jaw": np.stack([np.abs(rng.normal(0, 0.15, T)), np.zeros(T), np.zeros(T)], 1)}
    verts = mesh_sequence(layer, np.zeros(layer.n_shape), params, frontal=True)
    faces = layer.faces.numpy()
    center = verts.reshape(-1, 3).mean(0)
    t = time.perf_counter()
    for v in verts:
        frontal_view(v, faces, 512, center=center, scale=2000.0)
    frontal_fps = T / (time.perf_counter() - t)
    bg = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
    t = time.perf_counter()
    for v in verts:
        pix = np.stack([v[:, 0] * 2000 + 256, -v[:, 1] * 2000 + 256, 1 - v[:, 2]], -1)
        draw_mesh(bg, pix, faces, mode="shaded", alpha=0.55)
    overlay_fps = T / (time.perf_counter() - t)
    t = time.perf_counter()
    mesh_sequence(layer, np.zeros(layer.n_shape), params)
    mesh_fps = T / (time.perf_counter() - t)
    print(json.dumps({
        "frontal_512_fps": round(frontal_fps, 1), "overlay_512_fps": round(overlay_fps, 1), "mesh_forward_fps": round(mesh_fps, 1),
        "triangles": int(len(faces)), "machine": f"{platform.machine()} cores={os.cpu_count()}",
    }))


if __name__ == "__main__":
    main()
