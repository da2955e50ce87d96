"""Entry points of the viewpage: the command line and the durable event consumers."""
