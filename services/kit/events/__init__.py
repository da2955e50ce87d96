"""Domain events on the wire: the CloudEvents-shaped envelope, subjects and streams, and
publishing to NATS JetStream. The outbox relay and the consumers build on these."""
