"""The chaos suite: the whole local system under a steady reservation load while processes are
killed, stopped, slowed and restarted; afterwards the invariants of DESIGN.md are checked
against the stores themselves. Entry point: `python -m scripts.chaos [--short] [--scenario NAME...]`."""
