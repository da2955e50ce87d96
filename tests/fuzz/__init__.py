"""Property-based fuzzing of the real services with bad input (Hypothesis)."""
