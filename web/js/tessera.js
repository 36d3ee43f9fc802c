// Tessera's JavaScript client for the Client-Portal protocol (OWT 1.2).
//
// One Socket.IO connection and one RTCPeerConnection per client, renegotiated
// for every publication and subscription (the client always offers, the server
// answers). After a network drop Socket.IO reconnects and the client logs in
// again with its reconnection ticket; media keeps flowing meanwhile. When the
// room's media server dies, the portal's `drop` carries a token to join again:
// the client logs in with it, publishes again and subscribes to the mixed views again.
//
//   const client = new ConferenceClient();
//   const info = await client.join(token);
//   const publication = await client.publish(await navigator.mediaDevices.getUserMedia({audio: true, video: true}));
//   const subscription = await client.subscribe(info.room.streams.find((s) => s.type === "mixed").id);
//   video.srcObject = subscription.stream;
import { io } from "socket.io-client";

const PROTOCOL_VERSION = "1.2";
const SDK = { type: "JavaScript", version: "tessera-1.0" };
const REQUEST_TIMEOUT_MS = 20000;
// A portal that does not accept the connection by then is reported, naming its address.
const CONNECT_TIMEOUT_MS = 4000;
// Loopback and LAN candidates gather in milliseconds; do not hold an offer longer for STUN.
const GATHERING_WAIT_MS = 1500;

/** An error the server answered with, or a failed step on the client. */
export class ConferenceError extends Error {
  constructor(message, { code = "error" } = {}) {
    super(message);
    this.name = "ConferenceError";
    this.code = code;
  }
}

/** What a join token says about where to connect (the rest is the server's business). */
export function readToken(token) {
  let envelope;
  try {
    envelope = JSON.parse(atob(token));
  } catch {
    throw new ConferenceError("The token is not a Tessera/OWT token (base64 JSON)", { code: "token" });
  }
  if (!envelope || typeof envelope.host !== "string") {
    throw new ConferenceError("The token does not name a host", { code: "token" });
  }
  return { host: envelope.host, secure: Boolean(envelope.secure) };
}

function ticketExpiry(ticket) {
  try {
    return Number(JSON.parse(atob(ticket)).notAfter) || 0;
  } catch {
    return 0;
  }
}

function event(name, detail) {
  return new CustomEvent(name, { detail });
}

// -- hand raises and reactions (a Tessera extension of `text`, see README "Hand raise and
// reactions"): the message is one JSON object whose "tessera" key names the signal; OWT
// clients pass it on and show it as plain text ("text" is for them).

/** The reactions every Tessera client shows. */
export const REACTIONS = Object.freeze(["👍", "👏", "😂", "❤️", "🎉", "😮"]);

/** The `text` message that raises or lowers the sender's hand. */
export function encodeHand(raised) {
  const text = raised ? "raised a hand" : "lowered their hand";
  return JSON.stringify({ tessera: "hand", raised: Boolean(raised), text });
}

/** The `text` message of a reaction (one of REACTIONS). */
export function encodeReaction(emoji) {
  if (!REACTIONS.includes(emoji)) {
    throw new ConferenceError(`Unknown reaction ${JSON.stringify(emoji)}: one of ${REACTIONS.join(" ")}`, {
      code: "signal",
    });
  }
  return JSON.stringify({ tessera: "reaction", emoji, text: `reacted ${emoji}` });
}

/**
 * The signal a `text` message carries: {kind: "hand", raised} or {kind: "reaction", emoji};
 * null for plain text. Throws a ConferenceError naming the problem for a JSON object with a
 * "tessera" key that is not a signal this version understands.
 */
export function parseSignal(message) {
  if (typeof message !== "string" || !message.trimStart().startsWith("{")) return null;
  let body;
  try {
    body = JSON.parse(message);
  } catch {
    return null; // text that happens to start with a brace
  }
  if (!body || typeof body !== "object" || Array.isArray(body) || !("tessera" in body)) return null;
  const fail = (text) => new ConferenceError(text, { code: "signal" });
  if (body.tessera === "hand") {
    if (typeof body.raised !== "boolean") throw fail("A hand signal needs 'raised': true or false");
    return { kind: "hand", raised: body.raised };
  }
  if (body.tessera === "reaction") {
    if (!REACTIONS.includes(body.emoji)) {
      throw fail(`Unknown reaction ${JSON.stringify(body.emoji ?? null)}: one of ${REACTIONS.join(" ")}`);
    }
    return { kind: "reaction", emoji: body.emoji };
  }
  throw fail(`Unknown signal ${JSON.stringify(body.tessera ?? null)}: 'hand' or 'reaction'`);
}

/** Kinds ("audio", "video") a StreamInfo carries. */
export function trackKinds(stream) {
  return new Set(((stream && stream.media && stream.media.tracks) || []).map((t) => t.type));
}

/** A session (publication or subscription) on the client's one peer connection. */
class Session extends EventTarget {
  constructor(client, id, transceivers) {
    super();
    this.client = client;
    this.id = id;
    this.transceivers = transceivers;
    this.ended = false;
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    // A session that never gets ready must not leave an unhandled rejection behind.
    this.ready.catch(() => {});
  }

  _progress(status, data) {
    if (status === "ready") {
      this._resolveReady(this);
      this.dispatchEvent(event("ready", {}));
    } else if (status === "error") {
      const error = new ConferenceError(String(data || "Session failed"));
      this._rejectReady(error);
      this.dispatchEvent(event("error", { error }));
      // As OWT's SDK does: a session the server reports failed (for a subscription, "Source
      // stream loss" when its stream ends) is over; it is ended here and unpublished or
      // unsubscribed (the server has ended it already and says so, which is ignored).
      this.stop(error.message).catch(() => {});
    }
  }

  _end(reason) {
    if (this.ended) return;
    this.ended = true;
    this._rejectReady(new ConferenceError(reason || "Session ended"));
    this.dispatchEvent(event("ended", { reason }));
  }
}

/** Media this client sends into the room. */
export class Publication extends Session {
  constructor(client, id, transceivers, stream, source, { audioSource, attributes = {} } = {}) {
    super(client, id, transceivers);
    this.stream = stream;
    this.source = source;
    // As published: a rejoin publishes the same stream again alike.
    this.audioSource = audioSource;
    this.attributes = attributes;
    this.muted = { audio: false, video: false };
  }

  /** Stop sending `kind` ("audio" | "video"); others see the stream paused (the mix shows an avatar). */
  async mute(kind) {
    await this._control(kind, "pause", false);
  }

  async unmute(kind) {
    await this._control(kind, "play", true);
  }

  async _control(kind, operation, enabled) {
    const tracks = kind === "audio" ? this.stream.getAudioTracks() : this.stream.getVideoTracks();
    if (!tracks.length) throw new ConferenceError(`This publication has no ${kind}`);
    await this.client.request("stream-control", { id: this.id, operation, data: kind });
    for (const track of tracks) track.enabled = enabled;
    this.muted[kind] = !enabled;
  }

  /** Unpublish; the m-lines stay in later offers, inactive. */
  async stop(reason = "unpublished") {
    if (this.ended) return;
    this.client.publications.delete(this.id);
    this.client._deactivate(this.transceivers, true);
    this._end(reason);
    try {
      await this.client.request("unpublish", { id: this.id });
    } catch (error) {
      if (this.client.joined) throw error;
    }
  }
}

/** Media this client receives from one stream of the room (forward or mixed). */
export class Subscription extends Session {
  constructor(client, id, streamId, transceivers) {
    super(client, id, transceivers);
    this.streamId = streamId;
    this.options = {}; // subscribe()'s options: a rejoin subscribes again alike
    // As OWT's SDK: the MediaStream of the answer's msid for this subscription's tracks
    // (`ontrack`'s event.streams[0]); the server gives each subscription its own.
    this.stream = null;
  }

  /** Ask for other video parameters ({resolution: {width, height}, framerate, ...}). */
  async update(parameters) {
    await this.client.request("subscription-control", {
      id: this.id,
      operation: "update",
      data: { video: { parameters } },
    });
  }

  async pause(kind = "av") {
    await this.client.request("subscription-control", { id: this.id, operation: "pause", data: kind });
  }

  async play(kind = "av") {
    await this.client.request("subscription-control", { id: this.id, operation: "play", data: kind });
  }

  /** The inbound-rtp statistics of this subscription's receivers. */
  async getStats() {
    const reports = [];
    for (const transceiver of this.transceivers) {
      const stats = await transceiver.receiver.getStats();
      stats.forEach((report) => {
        if (report.type === "inbound-rtp") reports.push(report);
      });
    }
    return reports;
  }

  async stop(reason = "unsubscribed") {
    if (this.ended) return;
    this.client.subscriptions.delete(this.id);
    this.client._deactivate(this.transceivers, false);
    this._end(reason);
    try {
      await this.client.request("unsubscribe", { id: this.id });
    } catch (error) {
      if (this.client.joined) throw error;
    }
  }
}

/**
 * A participant of one conference room.
 *
 * Events (CustomEvent, data in `detail`): participantjoined {participant},
 * participantleft {participant}, streamadded {stream}, streamremoved {stream},
 * streamupdated {stream, field, value}, text {from, to, message},
 * hand {from, raised} and reaction {from, emoji} (after the `text` that carried them),
 * reconnecting {}, reconnected {}, left {reason} (dropped by the server, lost
 * for good, or logout); when the room's media server died: rejoining {reason},
 * then rejoined {reason, publications, subscriptions, failed} (Maps from the old
 * id to the new Publication / Subscription, and old id -> why it was not made
 * again) or rejoinfailed {reason} followed by left. Only mixed-view
 * subscriptions are made again; the others end ("Source stream loss").
 * `rejoin: false` treats such a drop as any other.
 */
export class ConferenceClient extends EventTarget {
  constructor({ rtcConfiguration = {}, io: ioFactory = io, rejoin = true } = {}) {
    super();
    this.rtcConfiguration = rtcConfiguration;
    this._io = ioFactory;
    this.rejoin = rejoin;
    this._url = null;
    this._rejoining = false;
    this.socket = null;
    this.pc = null;
    this.info = null;
    this.participants = new Map();
    this.streams = new Map();
    this.publications = new Map();
    this.subscriptions = new Map();
    this.transportId = null;
    this.ticket = null;
    this.joined = false;
    this._negotiation = Promise.resolve();
    this._answerWaiters = new Map();
    this._midOwner = new Map();
    this._earlyProgress = new Map();
    this._offerSent = false;
    this._ticketTimer = null;
    this._reconnecting = false;
    this.handRaised = false;
    // Ids of the participants whose hand is up, as their hand signals said.
    this.raisedHands = new Set();
  }

  get id() {
    return this.info ? this.info.id : null;
  }

  /** Connect and log in; resolves with the login reply ({id, user, role, permission, room}). */
  async join(token) {
    if (this.socket) throw new ConferenceError("Already joined; leave first");
    const { host, secure } = readToken(token);
    this._url = `${secure ? "https" : "http"}://${host}`;
    const info = await this._login(token);
    this._applyLogin(info);
    return info;
  }

  async _login(token) {
    this.socket = this._io(this._url, {
      transports: ["websocket"],
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
      timeout: 10000,
    });
    for (const name of ["participant", "stream", "progress", "text", "drop", "caption"]) {
      this.socket.on(name, (data) => this._dispatch(name, data));
    }
    this.socket.on("disconnect", (reason) => this._onDisconnect(reason));
    this.socket.io.on("reconnect", () => this._relogin());
    try {
      await this._connected(this._url);
      return await this.request("login", {
        token,
        userAgent: { sdk: SDK },
        protocol: PROTOCOL_VERSION,
      });
    } catch (error) {
      this._closeSocket();
      throw error;
    }
  }

  _connected(url) {
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let lastError = "";
      const timer = setTimeout(() => {
        cleanup();
        const why = lastError ? ` (${lastError})` : "";
        reject(new ConferenceError(`Cannot reach the conference server at ${url}${why}`, { code: "connection" }));
      }, CONNECT_TIMEOUT_MS);
      const onConnect = () => {
        cleanup();
        resolve();
      };
      let failures = 0;
      const onError = (error) => {
        lastError = (error && error.message) || String(error);
        failures += 1;
        if (error && error.message && /refused|forbidden|origin/i.test(error.message)) {
          cleanup();
          reject(new ConferenceError(`Connection refused: ${error.message}`, { code: "connection" }));
        } else if (failures >= 2) {
          // Socket.IO retries; a second failure in a row (nobody listens there) is the answer.
          cleanup();
          reject(new ConferenceError(`Cannot reach the conference server at ${url} (${lastError})`, { code: "connection" }));
        }
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.socket.off("connect", onConnect);
        this.socket.off("connect_error", onError);
      };
      this.socket.on("connect", onConnect);
      this.socket.on("connect_error", onError);
    });
  }

  /** Send a Client-Portal request; resolves with the data of an "ok" reply. */
  request(name, data, timeoutMs = REQUEST_TIMEOUT_MS) {
    const socket = this.socket;
    if (!socket) return Promise.reject(new ConferenceError("Not connected", { code: "connection" }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new ConferenceError(`${name}: no reply from the server`, { code: "timeout" }));
      }, timeoutMs);
      const ack = (status, reply) => {
        clearTimeout(timer);
        if (status === "ok" || status === "success") resolve(reply);
        else reject(new ConferenceError(typeof reply === "string" ? reply : `${name} failed`));
      };
      if (data === undefined) socket.emit(name, ack);
      else socket.emit(name, data, ack);
    });
  }

  /** Send a text message to everyone ("all") or to one participant id. */
  async send(message, to = "all") {
    await this.request("text", { to, message });
  }

  /** Raise this client's hand; participants who join later are told too while it is up. */
  async raiseHand() {
    await this.send(encodeHand(true));
    this.handRaised = true;
    if (this.id) this.raisedHands.add(this.id);
  }

  async lowerHand() {
    await this.send(encodeHand(false));
    this.handRaised = false;
    this.raisedHands.delete(this.id);
  }

  /** Send a reaction (one of REACTIONS). */
  async sendReaction(emoji) {
    await this.send(encodeReaction(emoji));
  }

  /**
   * Tessera's `connection-quality` request: everyone's connection figures as the server
   * measures them from their subscriptions, `[{id, loss, rtt, limited, level}]` (`level`
   * from connectionQuality, as for this client's own figures; "unknown" where none).
   */
  async connectionQuality() {
    const reply = await this.request("connection-quality");
    const listed = reply && Array.isArray(reply.participants) ? reply.participants : [];
    return listed
      .filter((p) => p && typeof p.id === "string")
      .map((p) => {
        const figures = {
          loss: typeof p.loss === "number" ? p.loss : null,
          rtt: typeof p.rtt === "number" ? p.rtt : null,
          limited: p.limited === true,
        };
        return { id: p.id, ...figures, level: connectionQuality(figures) };
      });
  }

  /** Log out and close everything. */
  async leave() {
    if (!this.socket) return;
    if (this.joined) {
      try {
        await this.request("logout", undefined, 5000);
      } catch {
        // Leaving anyway: the server removes us when the connection closes.
      }
    }
    this._end("left");
  }

  // -- publishing and subscribing -----------------------------------------------

  /**
   * Publish the audio and/or video track of `stream` (a MediaStream).
   * options: {source: "camera" | "screen-cast" (video source), audioSource: "mic" | "screen-cast",
   * attributes: {...}}. Resolves once the server's answer is applied; await
   * `publication.ready` for media to flow.
   */
  publish(stream, { source = "camera", audioSource, attributes = {} } = {}) {
    return this._serialize(async () => {
      this._checkJoined();
      const tracks = [...stream.getAudioTracks().slice(0, 1), ...stream.getVideoTracks().slice(0, 1)];
      if (!tracks.length) throw new ConferenceError("Nothing to publish: the stream has no tracks");
      const pc = this._ensurePc();
      const transceivers = tracks.map((track) =>
        pc.addTransceiver(track, { direction: "sendonly", streams: [stream] }),
      );
      await this._createOffer(transceivers, true);
      const sources = {
        audio: audioSource || (source === "screen-cast" ? "screen-cast" : "mic"),
        video: source,
      };
      const message = {
        media: {
          tracks: transceivers.map((t) => ({
            type: t.sender.track.kind,
            mid: t.mid,
            source: sources[t.sender.track.kind],
          })),
        },
        attributes,
        transport: this._transport(),
      };
      let reply;
      try {
        reply = await this.request("publish", message);
      } catch (error) {
        this._deactivate(transceivers, true);
        throw error;
      }
      const transportId = this._sessionReply(reply);
      const publication = new Publication(this, reply.id, transceivers, stream, source, {
        audioSource,
        attributes,
      });
      this.publications.set(publication.id, publication);
      this._applyEarlyProgress(publication);
      try {
        await this._exchange(transportId);
      } catch (error) {
        this.publications.delete(publication.id);
        this._deactivate(transceivers, true);
        publication._end(error.message);
        this.request("unpublish", { id: publication.id }).catch(() => {});
        throw error;
      }
      return publication;
    });
  }

  /**
   * Subscribe to a stream of the room. options: {audio: true, video: true | {parameters, codecs}}
   * where parameters is {resolution: {width, height}, framerate, bitrate, keyFrameInterval}
   * and codecs orders the offered video codecs (["h264", "vp8"]).
   */
  subscribe(streamId, { audio = true, video = true } = {}) {
    const options = { audio, video };
    return this._serialize(async () => {
      this._checkJoined();
      const known = this.streams.get(streamId);
      if (known) {
        const kinds = trackKinds(known);
        // Keep `video` as given (it may carry parameters and codecs) when the stream has video.
        if (!kinds.has("audio")) audio = false;
        if (!kinds.has("video")) video = false;
      }
      if (!audio && !video) throw new ConferenceError(`Nothing to subscribe to in stream ${streamId}`);
      const pc = this._ensurePc();
      const transceivers = [];
      if (audio) transceivers.push(pc.addTransceiver("audio", { direction: "recvonly" }));
      if (video) {
        const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
        const codecs = typeof video === "object" && video.codecs;
        if (codecs && codecs.length && transceiver.setCodecPreferences) {
          transceiver.setCodecPreferences(orderCodecs(codecs));
        }
        transceivers.push(transceiver);
      }
      await this._createOffer(transceivers, false);
      const requests = transceivers.map((t) => {
        const kind = t.receiver.track.kind;
        const request = { type: kind, mid: t.mid, from: streamId };
        if (kind === "video" && typeof video === "object" && video.parameters) {
          request.parameters = video.parameters;
        }
        return request;
      });
      let reply;
      try {
        reply = await this.request("subscribe", {
          media: { tracks: requests },
          transport: this._transport(),
        });
      } catch (error) {
        this._deactivate(transceivers, false);
        throw error;
      }
      const transportId = this._sessionReply(reply);
      const subscription = new Subscription(this, reply.id, streamId, transceivers);
      subscription.options = options;
      this.subscriptions.set(subscription.id, subscription);
      for (const transceiver of transceivers) this._midOwner.set(transceiver.mid, subscription);
      this._applyEarlyProgress(subscription);
      try {
        await this._exchange(transportId); // ontrack has run: subscription.stream is set
        if (!subscription.stream) {
          throw new ConferenceError("The answer gave this subscription no stream (no a=msid)", {
            code: "negotiation",
          });
        }
      } catch (error) {
        this.subscriptions.delete(subscription.id);
        this._deactivate(transceivers, false);
        subscription._end(error.message);
        this.request("unsubscribe", { id: subscription.id }).catch(() => {});
        throw error;
      }
      return subscription;
    });
  }

  // -- negotiation ------------------------------------------------------------------

  _serialize(task) {
    // One offer/answer at a time on the one peer connection.
    const run = this._negotiation.then(task, task);
    this._negotiation = run.catch(() => {});
    return run;
  }

  _ensurePc() {
    if (this.pc) return this.pc;
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", ...this.rtcConfiguration });
    pc.addEventListener("track", (e) => {
      // As OWT's SDK 5.1: the subscription of this transceiver takes the msid's stream.
      const owner = this._midOwner.get(e.transceiver.mid);
      if (owner instanceof Subscription && e.streams.length) owner.stream = e.streams[0];
    });
    pc.addEventListener("icecandidate", (e) => {
      // Candidates found after the offer went out are trickled (OWT sends them with "a=").
      if (e.candidate && e.candidate.candidate && this._offerSent && this.transportId) {
        this.request("soac", {
          id: this.transportId,
          signaling: {
            type: "candidate",
            candidate: {
              candidate: `a=${e.candidate.candidate}`,
              sdpMid: e.candidate.sdpMid,
              sdpMLineIndex: e.candidate.sdpMLineIndex,
            },
          },
        }).catch(() => {});
      }
    });
    pc.addEventListener("connectionstatechange", () => {
      this.dispatchEvent(event("connectionstatechange", { state: pc.connectionState }));
    });
    this.pc = pc;
    return pc;
  }

  async _createOffer(transceivers, sending) {
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
    } catch (error) {
      this._deactivate(transceivers, sending);
      throw new ConferenceError(`Cannot create an offer: ${error.message}`, { code: "negotiation" });
    }
    await this._gathered();
  }

  _gathered() {
    const pc = this.pc;
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, GATHERING_WAIT_MS);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  _transport() {
    return this.transportId ? { type: "webrtc", id: this.transportId } : { type: "webrtc" };
  }

  _sessionReply(reply) {
    if (!reply || typeof reply.id !== "string") {
      throw new ConferenceError(`Unexpected reply: ${JSON.stringify(reply)}`);
    }
    const transportId = typeof reply.transportId === "string" ? reply.transportId : this.transportId || reply.id;
    if (!this.transportId) this.transportId = transportId;
    return transportId;
  }

  async _exchange(transportId) {
    const answer = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._answerWaiters.delete(transportId);
        reject(new ConferenceError("No answer from the server", { code: "timeout" }));
      }, REQUEST_TIMEOUT_MS);
      // Registered before the offer goes out: the answer may overtake the soac ack.
      this._answerWaiters.set(transportId, (description) => {
        clearTimeout(timer);
        resolve(description);
      });
    });
    answer.catch(() => {});
    try {
      await this.request("soac", {
        id: transportId,
        signaling: { type: "offer", sdp: this.pc.localDescription.sdp },
      });
    } catch (error) {
      this._answerWaiters.delete(transportId);
      throw error;
    }
    this._offerSent = true;
    const description = await answer;
    try {
      await this.pc.setRemoteDescription({ type: "answer", sdp: description.sdp });
    } catch (error) {
      throw new ConferenceError(`Cannot apply the answer: ${error.message}`, { code: "negotiation" });
    }
  }

  _deactivate(transceivers, sending) {
    for (const transceiver of transceivers) {
      try {
        transceiver.direction = "inactive";
        if (sending) transceiver.sender.replaceTrack(null);
      } catch {
        // The peer connection is already closed.
      }
    }
  }

  // -- notifications ----------------------------------------------------------------

  _dispatch(name, data) {
    try {
      if (name === "participant") this._onParticipant(data);
      else if (name === "stream") this._onStream(data);
      else if (name === "progress") this._onProgress(data);
      else if (name === "text") this._onText(data);
      else if (name === "caption") this.dispatchEvent(event("caption", data));
      else if (name === "drop") this._onDrop(data);
    } catch (error) {
      // A listener that throws must not stop later notifications.
      console.error(`tessera: ${name} notification failed`, error);
    }
  }

  _applyLogin(info) {
    this.info = info;
    this.joined = true;
    this.participants = new Map(info.room.participants.map((p) => [p.id, p]));
    this.streams = new Map(info.room.streams.map((s) => [s.id, s]));
    this._setTicket(info.reconnectionTicket);
    // A new session (join, or rejoin with new ids): hands are heard afresh.
    this.raisedHands = new Set(this.handRaised ? [info.id] : []);
    if (this.handRaised) this.send(encodeHand(true)).catch(() => {});
  }

  _onText(data) {
    this.dispatchEvent(event("text", data));
    if (!data || typeof data.from !== "string") return;
    let signal;
    try {
      signal = parseSignal(data.message);
    } catch (error) {
      console.warn(`tessera: ignoring a signal from ${data.from}: ${error.message}`);
      return;
    }
    if (signal && signal.kind === "hand") {
      if (signal.raised) this.raisedHands.add(data.from);
      else this.raisedHands.delete(data.from);
      this.dispatchEvent(event("hand", { from: data.from, raised: signal.raised }));
    } else if (signal && signal.kind === "reaction") {
      this.dispatchEvent(event("reaction", { from: data.from, emoji: signal.emoji }));
    }
  }

  _onParticipant(data) {
    if (data.action === "join") {
      this.participants.set(data.data.id, data.data);
      // Text is not kept for latecomers: tell the newcomer the hand is up.
      if (this.handRaised) this.send(encodeHand(true), data.data.id).catch(() => {});
      this.dispatchEvent(event("participantjoined", { participant: data.data }));
    } else if (data.action === "leave") {
      const participant = this.participants.get(data.data) || { id: data.data };
      this.participants.delete(data.data);
      this.raisedHands.delete(data.data);
      this.dispatchEvent(event("participantleft", { participant }));
    }
  }

  _onStream(data) {
    if (data.status === "add") {
      this.streams.set(data.id, data.data);
      this.dispatchEvent(event("streamadded", { stream: data.data }));
    } else if (data.status === "remove") {
      const stream = this.streams.get(data.id) || { id: data.id };
      this.streams.delete(data.id);
      // Its subscriptions end on the server's progress error ("Source stream loss") that follows.
      this.dispatchEvent(event("streamremoved", { stream }));
    } else if (data.status === "update") {
      const stream = this.streams.get(data.id);
      const { field, value } = data.data || {};
      if (stream) applyStreamUpdate(stream, field, value);
      this.dispatchEvent(event("streamupdated", { stream: stream || { id: data.id }, field, value }));
    }
  }

  _onProgress(data) {
    if (data.status === "soac" && data.data && data.data.type === "answer") {
      const waiter = this._answerWaiters.get(data.id);
      if (waiter) {
        this._answerWaiters.delete(data.id);
        waiter(data.data);
      }
      return;
    }
    if (!data.sessionId) return; // transport-level "ready": nothing to do here
    const session = this.publications.get(data.sessionId) || this.subscriptions.get(data.sessionId);
    if (session) session._progress(data.status, data.data);
    else this._earlyProgress.set(data.sessionId, data);
  }

  _applyEarlyProgress(session) {
    // "ready" can arrive before the publish/subscribe reply has been handled.
    const early = this._earlyProgress.get(session.id);
    if (early) {
      this._earlyProgress.delete(session.id);
      session._progress(early.status, early.data);
    }
  }

  // -- reconnection ---------------------------------------------------------------

  _setTicket(ticket) {
    if (!ticket) return;
    this.ticket = ticket;
    clearTimeout(this._ticketTimer);
    const expiry = ticketExpiry(ticket);
    if (!expiry) return;
    const wait = Math.max(1000, (expiry - Date.now()) * 0.7);
    this._ticketTimer = setTimeout(() => this._refreshTicket(), wait);
  }

  async _refreshTicket() {
    if (!this.joined || this._reconnecting) return;
    try {
      this._setTicket(await this.request("refreshReconnectionTicket"));
    } catch {
      this._ticketTimer = setTimeout(() => this._refreshTicket(), 5000);
    }
  }

  _onDisconnect(reason) {
    if (!this.joined || this._rejoining) return;
    if (reason === "io server disconnect" || reason === "io client disconnect") {
      // The server closed us on purpose (drop, logout); there is nothing to resume.
      this._end(reason === "io server disconnect" ? "dropped" : "left");
      return;
    }
    this._reconnecting = true;
    this.dispatchEvent(event("reconnecting", { reason }));
  }

  async _relogin() {
    if (!this.joined || !this.ticket) return;
    try {
      const reply = await this.request("relogin", this.ticket);
      this._reconnecting = false;
      this._setTicket(reply.ticket);
      for (const message of reply.messages || []) this._dispatch(message.event, message.data);
      this.dispatchEvent(event("reconnected", {}));
    } catch (error) {
      this._end(`reconnection failed: ${error.message}`);
    }
  }

  // -- joining again when the room's media server died ---------------------------------

  _onDrop(data) {
    const token = data && typeof data.rejoin === "string" ? data.rejoin : null;
    if (!token || !this.rejoin || !this.joined) {
      this._end("dropped");
      return;
    }
    const reason = typeof data.reason === "string" ? data.reason : "the room's media server stopped";
    this._rejoin(token, reason).catch((error) => console.error("tessera: rejoin failed", error));
  }

  async _rejoin(token, reason) {
    // Synchronously, before the server's disconnect arrives: the old session is over.
    this._rejoining = true;
    this.dispatchEvent(event("rejoining", { reason }));
    const publications = [...this.publications.values()];
    const mixed = [...this.subscriptions.values()].filter(
      (s) => (this.streams.get(s.streamId) || {}).type === "mixed",
    );
    for (const subscription of this.subscriptions.values()) {
      if (mixed.includes(subscription)) continue;
      // Its stream is gone with the media server, as when a publisher leaves.
      subscription.dispatchEvent(event("error", { error: new ConferenceError("Source stream loss") }));
    }
    this._closeSession("the room's media server stopped");
    let info;
    try {
      info = await this._login(token);
    } catch (error) {
      this._rejoining = false;
      const why = `${reason}; joining again failed: ${error.message}`;
      this.dispatchEvent(event("rejoinfailed", { reason: why }));
      this.dispatchEvent(event("left", { reason: why }));
      return;
    }
    this._rejoining = false;
    this._applyLogin(info);
    const newPublications = new Map();
    const newSubscriptions = new Map();
    const failed = new Map();
    for (const old of publications) {
      try {
        const publication = await this.publish(old.stream, {
          source: old.source,
          audioSource: old.audioSource,
          attributes: old.attributes,
        });
        newPublications.set(old.id, publication);
      } catch (error) {
        failed.set(old.id, error.message);
      }
    }
    for (const old of mixed) {
      try {
        newSubscriptions.set(old.id, await this.subscribe(old.streamId, old.options));
      } catch (error) {
        failed.set(old.id, error.message);
      }
    }
    this.dispatchEvent(
      event("rejoined", { reason, publications: newPublications, subscriptions: newSubscriptions, failed }),
    );
  }

  _checkJoined() {
    if (!this.joined) throw new ConferenceError("Not in a conference: join first", { code: "state" });
  }

  _end(reason) {
    const wasJoined = this.joined;
    this._closeSession(reason);
    if (wasJoined) this.dispatchEvent(event("left", { reason }));
  }

  _closeSession(reason) {
    this.joined = false;
    this._reconnecting = false;
    clearTimeout(this._ticketTimer);
    for (const session of [...this.publications.values(), ...this.subscriptions.values()]) {
      session._end(reason);
    }
    this.publications.clear();
    this.subscriptions.clear();
    this._closeSocket();
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    this.transportId = null;
    this._offerSent = false;
    this._midOwner.clear();
    this._answerWaiters.clear();
    this._earlyProgress.clear();
  }

  _closeSocket() {
    if (this.socket) {
      this.socket.removeAllListeners();
      this.socket.io.removeAllListeners();
      this.socket.disconnect();
      this.socket = null;
    }
  }
}

/** Apply a `stream update` notification to the StreamInfo it names. */
export function applyStreamUpdate(stream, field, value) {
  if (field === "video.layout") {
    stream.info = { ...(stream.info || {}), layout: value };
  } else if (field === "activeInput") {
    stream.info = { ...(stream.info || {}), activeInput: value };
  } else if (field === "audio.status" || field === "video.status") {
    const kind = field.split(".")[0];
    for (const track of (stream.media && stream.media.tracks) || []) {
      if (track.type === kind) track.status = value;
    }
  } else if (field === ".") {
    Object.assign(stream, value);
  }
}

function orderCodecs(names) {
  const capabilities = RTCRtpReceiver.getCapabilities("video");
  if (!capabilities) return [];
  const wanted = names.map((n) => n.toLowerCase());
  const rank = (codec) => {
    const name = codec.mimeType.split("/")[1].toLowerCase();
    const index = wanted.indexOf(name);
    return index < 0 ? wanted.length : index;
  };
  return [...capabilities.codecs].sort((a, b) => rank(a) - rank(b));
}

// -- connection quality (the page's indicator) ------------------------------------------------

/**
 * "good", "fair" or "poor" for a connection's figures, "unknown" before there are any.
 * `loss`: share of packets lost (0..1) over the last interval, either way; `rtt` in seconds;
 * `limited`: the browser holds its video back for lack of bandwidth.
 */
export function connectionQuality({ loss = null, rtt = null, limited = false } = {}) {
  if (loss === null && rtt === null) return "unknown";
  if ((loss ?? 0) > 0.1 || (rtt ?? 0) > 0.5) return "poor";
  if ((loss ?? 0) > 0.02 || (rtt ?? 0) > 0.25 || limited) return "fair";
  return "good";
}

/**
 * This client's own connection figures from its peer connection's statistics (getStats):
 * loss of what it receives (inbound-rtp, since the last measure) and of what it sends (the
 * server's receiver reports: remote-inbound-rtp), the round trip of the selected candidate
 * pair, whether its video is limited by bandwidth. Only figures of this browser's own link.
 */
export class ConnectionMeter {
  constructor() {
    this.previous = new Map(); // inbound-rtp id -> {received, lost}
  }

  async measure(pc) {
    if (!pc) return { loss: null, rtt: null, limited: false, level: "unknown" };
    const stats = await pc.getStats();
    let received = 0;
    let lost = 0;
    let sentLoss = null;
    let rtt = null;
    let limited = false;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp") {
        const before = this.previous.get(report.id) || { received: 0, lost: 0 };
        const now = { received: report.packetsReceived || 0, lost: report.packetsLost || 0 };
        received += Math.max(0, now.received - before.received);
        lost += Math.max(0, now.lost - before.lost);
        this.previous.set(report.id, now);
      } else if (report.type === "remote-inbound-rtp" && typeof report.fractionLost === "number") {
        sentLoss = Math.max(sentLoss ?? 0, report.fractionLost);
      } else if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded") {
        if (typeof report.currentRoundTripTime === "number") rtt = report.currentRoundTripTime;
      } else if (report.type === "outbound-rtp" && report.kind === "video") {
        limited = limited || report.qualityLimitationReason === "bandwidth";
      }
    });
    const receivedLoss = received + lost > 0 ? lost / (received + lost) : null;
    const loss = receivedLoss === null && sentLoss === null ? null : Math.max(receivedLoss ?? 0, sentLoss ?? 0);
    const figures = { loss, rtt, limited };
    return { ...figures, level: connectionQuality(figures) };
  }
}
