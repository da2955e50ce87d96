"""The movie service's entry points besides gRPC: the review-event consumer, the deletion sweeper."""
