"""Mixer: layouts, video compositor, audio mixer, encoders and views."""
