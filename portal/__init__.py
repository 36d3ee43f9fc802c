"""Portal: the front ends (Socket.IO, REST, web app, PeerJS) and the app assembly."""
