"""The identity domain: principals and roles, password policy, token claims, key rotation and
sign-in throttling rules. Pure Python: no I/O, no clock of its own (times are passed in)."""
