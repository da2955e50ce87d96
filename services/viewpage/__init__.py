"""The viewpage service: the board (CQRS read model on Redis), built only from events."""
