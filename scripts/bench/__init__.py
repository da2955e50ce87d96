"""`make bench`: the whole local system under an open-loop mixed workload, next to the raw limits
of its own servers measured in the same run. Entry point: `python -m scripts.bench` (run.py)."""
