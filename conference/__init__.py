"""Conference: the room service between the media layers and the front ends.

One API (`RoomService`) for every front end: services (tenants), rooms, participants,
permissions, the store, tokens and reconnection tickets, room options, and the events
interface through which the service reaches clients (docs/architecture.md).
"""
