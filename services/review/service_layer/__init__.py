"""Use cases of the review service and the ports they need."""
