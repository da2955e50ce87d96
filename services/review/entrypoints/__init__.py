"""Entry points of the review service: the command line."""
