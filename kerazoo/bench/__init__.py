"""Benchmarking: `kerazoo benchmark` (benchmark.py), its tables (tables.py) and the peer (peer.py:
segmentation-models-pytorch run side by side)."""
