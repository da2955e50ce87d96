"""The web screen: one page served through the ingress, with live updates of the board."""
