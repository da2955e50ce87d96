"""Payment domain model: pure Python, no I/O, no protobuf, no gRPC, no database driver."""
