"""Use cases of notification: record a message for an event, deliver it, read a customer's messages."""
