"""Cinema's developer tooling: bootstrap, the local runtime (stores and services), benchmarks."""
