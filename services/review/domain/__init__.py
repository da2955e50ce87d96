"""The review domain: the Review aggregate, its rules and the events it raises (pure Python)."""
