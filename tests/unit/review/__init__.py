"""Unit tests of the review service (domain rules, use cases on fakes)."""
