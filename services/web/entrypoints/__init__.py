"""Entry points of the web service: the HTTP server and its command line."""
