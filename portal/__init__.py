"""Portal: signaling, tokens, rooms, REST management API and app assembly."""
