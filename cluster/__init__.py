"""Tessera across processes: the Redis bus, node leases, room placement."""
