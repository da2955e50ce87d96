"""Use cases of the web service: fanning the board's changes out to the open pages."""
