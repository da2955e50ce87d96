"""The catalog's model: plain Python, no I/O, no protobuf."""
