"""Live captions: an offline speech recogniser per publication's audio, run for a room."""
