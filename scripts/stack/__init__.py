"""The local runtime: start, supervise and check the stores and services on 127.0.0.1.

`stores` knows how to run each store (PostgreSQL, FerretDB, Redis, NATS JetStream) from the
binaries the bootstrap installed; `supervisor` keeps a set of processes alive for `make up`;
the test suite uses `stores` directly to start throwaway servers on free ports.
"""
