"""What the catalog's ports are served by: MongoDB (FerretDB), JetStream envelopes, gRPC."""
