"""Use cases of the viewpage: apply an event, answer board queries, rebuild by replay."""
