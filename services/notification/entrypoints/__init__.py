"""Entry points of notification: the command line, the event consumers and the delivery loop."""
