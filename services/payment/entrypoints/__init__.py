"""Entry points of the payment service: the command line and the ReservationCancelled consumer."""
