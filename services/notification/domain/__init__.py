"""The notification domain: what a message says and when a delivery is tried again. Pure Python."""
