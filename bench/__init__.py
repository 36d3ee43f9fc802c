"""Benchmarks of Tessera's media paths (`python -m bench.mixer`).

Not part of the installed distribution: these modules measure the mixer and
the subscriber fan-out on the machine they run on and print the figures that
MEDIA-NOTES.md quotes.
"""
