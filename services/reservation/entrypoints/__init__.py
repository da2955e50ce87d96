"""Entry points of booking besides gRPC: the catalog event consumer and the reconciler loop."""
