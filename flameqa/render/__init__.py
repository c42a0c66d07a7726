"""Mesh overlay rendering on CPU (OpenCV rasterization): see ``raster`` and ``video``."""
