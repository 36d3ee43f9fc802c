"""WebRTC agent: aiortc sessions, publications in and subscriptions out."""
