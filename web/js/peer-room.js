// Rooms in the peer model (PeerJS / SkyWay style) on top of the unmodified peerjs library.
//
//   const peer = new peerjs.Peer({host: location.hostname, port: location.port,
//                                 path: "/peerjs", key: "<service id>"});
//   peer.on("open", async () => {
//     const room = await joinRoom(peer, "huddle", {mode: "mesh", stream: localStream});
//     room.addEventListener("stream", (e) => show(e.detail.peer, e.detail.stream));
//   });
//
// mode "mesh": the server relays signaling between the room's members (Tessera's
// ROOM-JOIN / ROOM-MEMBERS / ROOM-PEER-JOINED / ROOM-PEER-LEFT / ROOM-ERROR messages on
// the peer's own WebSocket); the newcomer calls every member with peer.call(), members
// answer calls from members; media flows peer to peer. The room is deleted on the
// server when its last member leaves.
//
// mode "sfu" / "mcu": the room goes through the server, with the Client-Portal client
// (tessera.js) and a join token from the application server: "sfu" receives every
// participant's stream, "mcu" the room's mixed view. (Calling the peer "room:<name>"
// with peer.call() is the other way to get the mixed view with peerjs alone.)
//
// Events (CustomEvent, details): "stream" {peer, stream}, "peerjoined" {peer},
// "peerleft" {peer}, "error" {message}, "left" {}.

import { ConferenceClient } from "./tessera.js";

const JOIN_TIMEOUT_MS = 10000;

function event(name, detail) {
  return new CustomEvent(name, { detail });
}

export class RoomError extends Error {}

/** Join room `name` with an open peerjs Peer. Resolves once joined. */
export async function joinRoom(peer, name, { mode = "mesh", stream = null, token = null } = {}) {
  if (mode === "mesh") {
    const room = new MeshRoom(peer, name, stream);
    await room.join();
    return room;
  }
  if (mode === "sfu" || mode === "mcu") {
    if (!token) throw new RoomError(`${mode} rooms need a join token (from the application server)`);
    const room = new PortalRoom(name, mode, stream);
    await room.join(token);
    return room;
  }
  throw new RoomError(`unknown room mode ${mode}: mesh, sfu or mcu`);
}

/** A mesh room: one peerjs MediaConnection to each other member. */
export class MeshRoom extends EventTarget {
  constructor(peer, name, stream) {
    super();
    this.peer = peer;
    this.name = name;
    this.mode = "mesh";
    this.localStream = stream;
    this.members = new Set(); // the other members' peer ids
    this.calls = new Map(); // member id -> MediaConnection
    this.streams = new Map(); // member id -> remote MediaStream
    this.joined = false;
    this._onMessage = (message) => this._handle(message);
    this._onCall = (call) => this._incoming(call);
  }

  join() {
    const socket = this.peer.socket;
    if (!this.peer.open || !socket) return Promise.reject(new RoomError("the peer is not open"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._detach();
        reject(new RoomError(`no answer to joining room ${this.name}`));
      }, JOIN_TIMEOUT_MS);
      this._settle = (error) => {
        clearTimeout(timer);
        this._settle = null;
        if (error) {
          this._detach();
          reject(error);
        } else resolve(this);
      };
      socket.on("message", this._onMessage);
      this.peer.on("call", this._onCall);
      socket.send({ type: "ROOM-JOIN", payload: { room: this.name, mode: "mesh" } });
    });
  }

  _handle(message) {
    const payload = message.payload || {};
    if (!message.type || !message.type.startsWith("ROOM-") || payload.room !== this.name) {
      if (message.type === "ROOM-ERROR" && this._settle) this._settle(new RoomError(payload.msg));
      return;
    }
    switch (message.type) {
      case "ROOM-MEMBERS":
        this.joined = true;
        for (const member of payload.members) {
          this.members.add(member);
          this._call(member);
        }
        if (this._settle) this._settle(null);
        break;
      case "ROOM-PEER-JOINED":
        this.members.add(payload.peer);
        this.dispatchEvent(event("peerjoined", { peer: payload.peer }));
        break;
      case "ROOM-PEER-LEFT":
        this._forget(payload.peer);
        this.dispatchEvent(event("peerleft", { peer: payload.peer }));
        break;
      case "ROOM-ERROR":
        if (this._settle) this._settle(new RoomError(payload.msg));
        else this.dispatchEvent(event("error", { message: payload.msg }));
        break;
    }
  }

  _call(member) {
    // A member that only watches still needs m-lines to receive on.
    const stream = this.localStream || new MediaStream();
    const options = this.localStream ? {} : { constraints: { offerToReceiveAudio: true, offerToReceiveVideo: true } };
    const call = this.peer.call(member, stream, options);
    if (call) this._track(member, call);
  }

  _incoming(call) {
    // Calls from members of this room are answered; others are the application's.
    if (!this.members.has(call.peer) || this.calls.has(call.peer)) return;
    call.answer(this.localStream || undefined);
    this._track(call.peer, call);
  }

  _track(member, call) {
    this.calls.set(member, call);
    call.on("stream", (stream) => {
      if (this.calls.get(member) !== call) return;
      this.streams.set(member, stream);
      this.dispatchEvent(event("stream", { peer: member, stream }));
    });
    call.on("close", () => {
      if (this.calls.get(member) === call) this._forget(member);
    });
  }

  _forget(member) {
    this.members.delete(member);
    const call = this.calls.get(member);
    this.calls.delete(member);
    this.streams.delete(member);
    if (call) call.close();
  }

  _detach() {
    if (this.peer.socket) this.peer.socket.removeListener("message", this._onMessage);
    this.peer.off("call", this._onCall);
  }

  /** Leave the room and hang up on every member. */
  leave() {
    if (this.peer.socket && this.joined) {
      this.peer.socket.send({ type: "ROOM-LEAVE", payload: { room: this.name } });
    }
    this.joined = false;
    for (const member of [...this.calls.keys()]) this._forget(member);
    this.members.clear();
    this._detach();
    this.dispatchEvent(event("left", {}));
  }
}

/** An sfu or mcu room through the Client-Portal (tessera.js). */
export class PortalRoom extends EventTarget {
  constructor(name, mode, stream) {
    super();
    this.name = name;
    this.mode = mode;
    this.localStream = stream;
    this.client = new ConferenceClient();
    this.streams = new Map(); // stream id -> MediaStream
    this.subscriptions = new Map();
    this.publication = null;
  }

  async join(token) {
    const client = this.client;
    await client.join(token);
    client.addEventListener("participantjoined", (e) =>
      this.dispatchEvent(event("peerjoined", { peer: e.detail.participant.id })));
    client.addEventListener("participantleft", (e) =>
      this.dispatchEvent(event("peerleft", { peer: e.detail.participant.id || e.detail.participant })));
    client.addEventListener("streamadded", (e) => this._offered(e.detail.stream));
    client.addEventListener("streamremoved", (e) => this._gone(e.detail.stream.id));
    if (this.localStream) {
      this.publication = await client.publish(this.localStream);
    }
    for (const stream of client.streams.values()) this._offered(stream);
    return this;
  }

  _wanted(stream) {
    if (this.mode === "mcu") return stream.type === "mixed" && this.streams.size === 0;
    return stream.type === "forward" && (!this.publication || stream.id !== this.publication.id);
  }

  async _offered(stream) {
    if (!this._wanted(stream) || this.subscriptions.has(stream.id)) return;
    this.subscriptions.set(stream.id, null);
    try {
      const subscription = await this.client.subscribe(stream.id);
      this.subscriptions.set(stream.id, subscription);
      this.streams.set(stream.id, subscription.stream);
      const owner = (stream.info && stream.info.owner) || stream.id;
      this.dispatchEvent(event("stream", { peer: owner, stream: subscription.stream, id: stream.id }));
    } catch (error) {
      this.subscriptions.delete(stream.id);
      this.dispatchEvent(event("error", { message: String(error.message || error) }));
    }
  }

  _gone(streamId) {
    this.subscriptions.delete(streamId);
    this.streams.delete(streamId);
  }

  async leave() {
    await this.client.leave();
    this.dispatchEvent(event("left", {}));
  }
}
