"""Cinema's services: one sub-package per bounded context, plus the shared kit."""
