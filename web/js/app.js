// The conference page: join form, the room's mixed video, people, chat, recordings.
//
// Tokens and the moderator actions (layout, recording) come from the server's
// built-in demo app server (/demo/, see portal/webapp.py). A page opened with
// `#token=<token>` (from your own app server) skips the form and joins with it.
// Before joining, a preview shows the camera and the microphone's level; the media
// previewed is the media published. `?room=<name>` (an invite link) fills in the room.
import { ConferenceClient, ConferenceError, ConnectionMeter, REACTIONS, parseSignal } from "./tessera.js";

const $ = (id) => document.getElementById(id);

const state = {
  client: null,
  user: "",
  room: "",
  role: "",
  moderator: false,
  mixedStreamId: null,
  mixedSubscription: null,
  camera: null, // Publication of camera + microphone
  localStream: null,
  screen: null, // Publication of the screen share
  recording: null, // running recording id
  recordingsTimer: null,
  unread: 0,
  preview: null, // the MediaStream of the device preview, published on join
  previewStarting: null, // the preview's getUserMedia, while it runs
  levels: {}, // meter id -> the level it shows (0..1)
  inviteLink: "",
  selfViewHidden: false,
  layoutBase: null, // the region set the room's view shows now (moderators read it)
  captionsSeen: false, // the room sent a caption: it has captions, the control shows
  captionsOn: true, // the person's choice: show captions or not
  // This browser's own connection: {loss, rtt, limited, level} from getStats every 2 s.
  quality: null,
  qualityTimer: null,
  // Everyone else's connection, as the server measures it: id -> {loss, rtt, limited, level}.
  othersQuality: new Map(),
};
// Tests and curious people can look at the page's state from the console.
window.tessera = state;

// -- messages people can act on ----------------------------------------------------

function explainJoinError(error) {
  const text = String((error && error.message) || error);
  if (/expired/i.test(text)) {
    return "Your invitation has expired (they last a few minutes and work once). Ask for a new link, or join again from this page.";
  }
  if (/already been used|already used|reused/i.test(text)) {
    return "This invitation has already been used. Join again from this page to get a new one.";
  }
  if (/origin/i.test(text)) return `This page's address may not join this service: ${text}`;
  if (/reach|connection/i.test(text)) return `${text}. Check your network and try again.`;
  return `Could not join: ${text}`;
}

function explainMediaError(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "Camera and microphone access was refused. You are in the room and can watch and chat; allow access for this site in your browser's settings and join again to be seen and heard.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return "No camera or microphone was found. You are in the room and can watch and chat.";
  }
  if (name === "NotReadableError") {
    return "Your camera or microphone is in use by another program. Close it and join again to be seen and heard.";
  }
  return `Your camera and microphone could not be used (${(error && error.message) || error}).`;
}

function showNotice(text, { timeout = 0 } = {}) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = !text;
  clearTimeout(showNotice.timer);
  if (text && timeout) showNotice.timer = setTimeout(() => (notice.hidden = true), timeout);
}

function showJoinError(text) {
  const box = $("join-error");
  box.textContent = text;
  box.hidden = !text;
}

// -- the demo app server -----------------------------------------------------------------

async function demo(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.client && state.client.ticket) headers.Authorization = `Ticket ${state.client.ticket}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    // An empty or non-JSON body: the status says enough.
  }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || `${response.status} ${response.statusText}`;
    throw new ConferenceError(message, { code: String(response.status) });
  }
  return data;
}

// -- joining and leaving ------------------------------------------------------------------

function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  return words.slice(0, 2).map((w) => [...w][0].toUpperCase()).join("") || "?";
}

function colourOf(text) {
  let hash = 0;
  for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 42%)`;
}

async function join({ token, user, room, role }) {
  const button = $("join-button");
  button.disabled = true;
  button.textContent = "Joining…";
  showJoinError("");
  try {
    if (!token) {
      const issued = await demo("POST", "/demo/token", { room, user, role });
      token = issued.token;
      state.moderator = issued.moderator;
    }
    const client = new ConferenceClient();
    wireClient(client);
    const info = await client.join(token);
    state.client = client;
    state.user = info.user;
    state.role = info.role;
    state.room = info.room.name || room || info.room.id;
    enterConference(info);
  } catch (error) {
    showJoinError(explainJoinError(error));
    return false;
  } finally {
    button.disabled = false;
    button.textContent = "Join room";
  }
  return true;
}

function enterConference(info) {
  $("join-screen").hidden = true;
  $("conference-screen").hidden = false;
  $("room-title").textContent = state.room;
  document.title = `${state.room} · Tessera`;
  $("layout-control").hidden = !state.moderator;
  $("record-button").hidden = !state.moderator;
  if (state.moderator) refreshLayout();
  const canPublish = info.permission && info.permission.publish;
  const canAudio = Boolean(canPublish && canPublish.audio);
  const canVideo = Boolean(canPublish && canPublish.video);
  $("mic-button").disabled = !canAudio;
  $("camera-button").disabled = !canVideo;
  $("screen-button").disabled = !canVideo;
  renderParticipants();
  subscribeMixed();
  if (canAudio || canVideo) publishCamera(canAudio, canVideo);
  else Promise.resolve(state.previewStarting).then(stopPreview); // watching only: camera off
  refreshRecordings();
  state.recordingsTimer = setInterval(refreshRecordings, 5000);
  startQualityMeter();
}

function leaveConference(message = "") {
  clearInterval(state.recordingsTimer);
  clearInterval(state.qualityTimer);
  state.quality = null;
  state.othersQuality = new Map();
  for (const track of state.localStream ? state.localStream.getTracks() : []) track.stop();
  if (state.screen) for (const track of state.screen.stream.getTracks()) track.stop();
  Object.assign(state, {
    client: null,
    mixedStreamId: null,
    mixedSubscription: null,
    camera: null,
    localStream: null,
    screen: null,
    recording: null,
    unread: 0,
    layoutBase: null,
    captionsSeen: false,
  });
  clearCaptions();
  $("captions-button").hidden = true;
  $("mixed-video").srcObject = null;
  $("self-view").srcObject = null;
  $("self-tile").hidden = true;
  detachMeter("mic-level");
  $("reaction-feed").replaceChildren();
  $("reaction-picker").hidden = true;
  $("chat-log").replaceChildren();
  $("conference-screen").hidden = true;
  $("join-screen").hidden = false;
  document.title = "Tessera";
  setPressed($("mic-button"), false, "Mute");
  setPressed($("camera-button"), false, "Stop video");
  setPressed($("screen-button"), false, "Share screen");
  setPressed($("hand-button"), false, "Raise hand");
  showNotice("");
  showJoinError(message);
  startPreview();
}

function wireClient(client) {
  client.addEventListener("participantjoined", renderParticipants);
  client.addEventListener("participantleft", renderParticipants);
  client.addEventListener("streamadded", (e) => {
    renderParticipants();
    if (e.detail.stream.type === "mixed" && !state.mixedStreamId) subscribeMixed();
  });
  client.addEventListener("streamremoved", renderParticipants);
  client.addEventListener("streamupdated", (e) => {
    const field = e.detail.field;
    if (field === "audio.status" || field === "video.status" || field === "activeInput") renderParticipants();
    // Another moderator's choice, or a screen share, changes the view's region set.
    if (field === "video.layout" && state.moderator && e.detail.stream.id === state.mixedStreamId) {
      refreshLayout();
    }
  });
  client.addEventListener("caption", (e) => {
    if (state.client === client) showCaption(e.detail);
  });
  client.addEventListener("text", (e) => {
    if (isSignal(e.detail.message)) return; // a hand or a reaction: shown by its own event
    addChat(e.detail.from, e.detail.message, e.detail.to);
  });
  client.addEventListener("hand", (e) => {
    renderParticipants();
    if (e.detail.raised && e.detail.from !== client.id) {
      showNotice(`${nameOf(e.detail.from)} raised a hand`, { timeout: 6000 });
    }
  });
  client.addEventListener("reaction", (e) => showReaction(e.detail.from, e.detail.emoji));
  client.addEventListener("reconnecting", () => setConnectionState("Reconnecting…"));
  client.addEventListener("reconnected", () => setConnectionState(""));
  // The room's media server died: the client joins the room again by itself.
  client.addEventListener("rejoining", () => setConnectionState("Reconnecting to the room…"));
  client.addEventListener("rejoined", (e) => {
    if (state.client === client) adoptRejoined(client, e.detail);
  });
  client.addEventListener("left", (e) => {
    if (state.client !== client) return;
    const reason = e.detail.reason;
    if (reason === "left") leaveConference();
    else if (reason === "dropped") leaveConference("You were removed from the room, or the server is shutting down.");
    else leaveConference(`You lost the connection to the room (${reason}). Join again to continue.`);
  });
}

function setConnectionState(text) {
  const badge = $("connection-state");
  badge.textContent = text;
  badge.hidden = !text;
}

// -- media ----------------------------------------------------------------------------------

function mixedStreamOf(client) {
  const mixed = [...client.streams.values()].filter((s) => s.type === "mixed");
  return mixed.find((s) => s.info && s.info.label === "common") || mixed[0] || null;
}

async function subscribeMixed() {
  const client = state.client;
  const stream = client && mixedStreamOf(client);
  if (!stream) {
    $("mixed-placeholder").textContent = "This room has no mixed view.";
    return;
  }
  state.mixedStreamId = stream.id;
  try {
    const subscription = await client.subscribe(stream.id, { audio: true, video: true });
    if (state.client !== client) return;
    showMixed(subscription);
  } catch (error) {
    state.mixedStreamId = null;
    showNotice(`Cannot receive the room video: ${error.message}`);
  }
}

function showMixed(subscription) {
  state.mixedStreamId = subscription.streamId;
  state.mixedSubscription = subscription;
  const video = $("mixed-video");
  video.srcObject = subscription.stream;
  video.play().catch(() => {
    // Autoplay with sound needs a gesture in some browsers; the join click usually counts.
    showNotice("Click anywhere to start the room's sound.", { timeout: 8000 });
    document.addEventListener("click", () => video.play(), { once: true });
  });
  video.addEventListener("loadeddata", () => ($("mixed-placeholder").hidden = true), { once: true });
  subscription.addEventListener("ended", () => {
    if (state.mixedSubscription === subscription) {
      state.mixedSubscription = null;
      state.mixedStreamId = null;
    }
  });
}

/** Back in the room after its media server died: the new publications and mixed view. */
async function adoptRejoined(client, { publications, subscriptions, failed }) {
  setConnectionState("");
  const mixed = [...subscriptions.values()][0];
  if (mixed) showMixed(mixed);
  else subscribeMixed();
  for (const name of ["camera", "screen"]) {
    const old = state[name];
    if (!old) continue;
    const fresh = publications.get(old.id) || null;
    state[name] = fresh;
    // Muted before: muted again (the tracks are still disabled).
    for (const kind of ["audio", "video"]) {
      if (fresh && old.muted[kind]) await fresh.mute(kind).catch(() => {});
    }
  }
  if (failed.size) showNotice("Back in the room, but not all your media could be sent again.", { timeout: 8000 });
  renderParticipants();
}

async function publishCamera(audio, video) {
  const client = state.client;
  let media;
  try {
    media = await takePreview(audio, video);
    if (!media) media = await navigator.mediaDevices.getUserMedia(constraints(audio, video));
  } catch (error) {
    showNotice(explainMediaError(error));
    $("mic-button").disabled = true;
    $("camera-button").disabled = true;
    $("screen-button").disabled = !video;
    return;
  }
  if (state.client !== client) {
    for (const track of media.getTracks()) track.stop();
    return;
  }
  state.localStream = media;
  if (media.getVideoTracks().length) {
    $("self-view").srcObject = media;
    $("self-tile").hidden = false;
  }
  if (media.getAudioTracks().length) attachMeter("mic-level", media);
  try {
    state.camera = await client.publish(media, { source: "camera", attributes: { name: state.user } });
    if ($("start-muted").checked && media.getAudioTracks().length) await toggleMute("audio");
    if ($("start-camera-off").checked && media.getVideoTracks().length) await toggleMute("video");
  } catch (error) {
    showNotice(`Your camera and microphone could not be sent: ${error.message}`);
  }
}

async function toggleMute(kind) {
  const publication = state.camera;
  if (!publication) return;
  const button = kind === "audio" ? $("mic-button") : $("camera-button");
  button.disabled = true;
  try {
    if (publication.muted[kind]) await publication.unmute(kind);
    else await publication.mute(kind);
    const off = publication.muted[kind];
    if (kind === "audio") setPressed(button, off, off ? "Unmute" : "Mute");
    else {
      setPressed(button, off, off ? "Start video" : "Stop video");
      $("self-tile").hidden = off;
    }
  } catch (error) {
    showNotice(`Could not change your ${kind === "audio" ? "microphone" : "camera"}: ${error.message}`, {
      timeout: 6000,
    });
  } finally {
    button.disabled = false;
  }
}

async function toggleScreen() {
  const button = $("screen-button");
  if (state.screen) {
    const screen = state.screen;
    state.screen = null;
    for (const track of screen.stream.getTracks()) track.stop();
    setPressed(button, false, "Share screen");
    await screen.stop().catch(() => {});
    return;
  }
  let media;
  try {
    media = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
  } catch (error) {
    if (error && error.name !== "NotAllowedError") showNotice(`Cannot share the screen: ${error.message}`, { timeout: 6000 });
    return;
  }
  button.disabled = true;
  try {
    const publication = await state.client.publish(media, {
      source: "screen-cast",
      attributes: { name: `${state.user} (screen)` },
    });
    state.screen = publication;
    setPressed(button, true, "Stop sharing");
    // The browser's own "Stop sharing" bar ends the track.
    media.getVideoTracks()[0].addEventListener("ended", () => {
      if (state.screen === publication) toggleScreen();
    });
  } catch (error) {
    for (const track of media.getTracks()) track.stop();
    showNotice(`Cannot share the screen: ${error.message}`, { timeout: 6000 });
  } finally {
    button.disabled = false;
  }
}

function setPressed(button, pressed, label) {
  button.setAttribute("aria-pressed", String(pressed));
  const span = button.querySelector(".label");
  if (span) span.textContent = label;
}

// -- people ---------------------------------------------------------------------------------

function mediaStateOf(participantId) {
  // A participant's camera publication says whether their mic and camera are on.
  const result = { audio: null, video: null, screen: false };
  const client = state.client;
  for (const stream of client ? client.streams.values() : []) {
    if (stream.type !== "forward" || !stream.info || stream.info.owner !== participantId) continue;
    for (const track of stream.media.tracks) {
      if (track.source === "screen-cast" && track.type === "video") result.screen = true;
      else if (track.type === "audio" || track.type === "video") result[track.type] = track.status !== "inactive";
    }
  }
  return result;
}

/** The participant whose stream the room's mixed view names as its active input, or null. */
function speakerOf(client) {
  const mixed = mixedStreamOf(client);
  const active = mixed && mixed.info ? mixed.info.activeInput : null;
  // OWT sends the stream id; a selecting stream's update carries {id, volume}.
  const id = active && typeof active === "object" ? active.id : active;
  const stream = typeof id === "string" ? client.streams.get(id) : null;
  return stream && stream.info ? stream.info.owner || null : null;
}

function nameOf(participantId) {
  const client = state.client;
  const participant = client && client.participants.get(participantId);
  if (client && participantId === client.id) return "You";
  return participant ? participant.user : "Someone who left";
}

function renderParticipants() {
  const client = state.client;
  if (!client) return;
  const list = $("participant-list");
  const people = [...client.participants.values()];
  const speaker = speakerOf(client);
  $("people-count").textContent = String(people.length);
  list.replaceChildren(
    ...people.map((p) => {
      const item = document.createElement("li");
      item.dataset.participant = p.id;
      const avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.style.background = colourOf(p.user);
      avatar.textContent = initials(p.user);
      const who = document.createElement("div");
      who.className = "who";
      const speaking = p.id === speaker;
      item.classList.toggle("speaking", speaking);
      item.dataset.speaking = String(speaking);
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = p.id === client.id ? `${p.user} (you)` : p.user;
      if (speaking) {
        const note = document.createElement("span");
        note.className = "speaking-note";
        note.textContent = " speaking";
        name.append(note);
      }
      const role = document.createElement("div");
      role.className = "role";
      role.textContent = p.role;
      who.append(name, role);
      const icons = document.createElement("div");
      icons.className = "state-icons";
      const media = mediaStateOf(p.id);
      for (const [kind, label] of [["audio", "mic"], ["video", "cam"]]) {
        if (media[kind] === null) continue;
        const icon = document.createElement("span");
        icon.textContent = media[kind] ? label : `${label} off`;
        icon.className = media[kind] ? "on" : "off";
        icon.dataset.kind = kind;
        icons.append(icon);
      }
      if (media.screen) {
        const icon = document.createElement("span");
        icon.textContent = "screen";
        icons.append(icon);
      }
      if (p.id === client.id && state.quality) icons.prepend(qualityIcon(state.quality));
      const theirs = p.id === client.id ? null : state.othersQuality.get(p.id);
      if (theirs && theirs.level !== "unknown") icons.prepend(qualityIcon(theirs));
      if (client.raisedHands.has(p.id)) {
        const hand = document.createElement("span");
        hand.className = "hand";
        hand.textContent = "✋";
        hand.title = "Hand raised";
        hand.setAttribute("role", "img");
        hand.setAttribute("aria-label", "Hand raised");
        icons.prepend(hand);
      }
      item.append(avatar, who, icons);
      return item;
    }),
  );
}

// -- connection quality -----------------------------------------------------------------------
// This browser's own connection from its getStats figures; everyone else's from the figures
// the server measures of their subscriptions and publications (the connection-quality request),
// judged by the same connectionQuality. A participant the server has no figures of shows none.

const QUALITY_LABELS = { good: "Good connection", fair: "Fair connection", poor: "Poor connection" };

function startQualityMeter() {
  const meter = new ConnectionMeter();
  clearInterval(state.qualityTimer);
  state.qualityTimer = setInterval(async () => {
    const client = state.client;
    if (!client) return;
    try {
      const quality = await meter.measure(client.pc);
      const changed = !state.quality || state.quality.level !== quality.level;
      state.quality = quality;
      if (changed) renderParticipants();
    } catch (error) {
      console.warn("connection figures unavailable", error);
    }
    refreshOthersQuality(client);
  }, 2000);
}

async function refreshOthersQuality(client) {
  let listed;
  try {
    listed = await client.connectionQuality();
  } catch (error) {
    console.warn("others' connection figures unavailable", error);
    return;
  }
  if (client !== state.client) return; // left meanwhile
  const before = state.othersQuality;
  const now = new Map(listed.map((q) => [q.id, q]));
  const changed =
    now.size !== before.size || [...now].some(([id, q]) => !before.has(id) || before.get(id).level !== q.level);
  state.othersQuality = now;
  if (changed) renderParticipants();
}

function qualityIcon(quality) {
  const icon = document.createElement("span");
  icon.className = "quality";
  icon.dataset.quality = quality.level;
  const figures = [];
  if (quality.loss !== null) figures.push(`${(quality.loss * 100).toFixed(1)} % lost`);
  if (quality.rtt !== null) figures.push(`${Math.round(quality.rtt * 1000)} ms round trip`);
  if (quality.limited) figures.push("video held back for bandwidth");
  const label = QUALITY_LABELS[quality.level] || "Connection not measured yet";
  icon.title = figures.length ? `${label}: ${figures.join(", ")}` : label;
  icon.setAttribute("role", "img");
  icon.setAttribute("aria-label", icon.title);
  icon.textContent = "▂▄▆";
  return icon;
}

// -- chat -------------------------------------------------------------------------------------

function addChat(fromId, message, to) {
  const client = state.client;
  if (!client) return;
  const item = document.createElement("li");
  const from = document.createElement("div");
  from.className = "from";
  const mine = fromId === client.id;
  const sender = client.participants.get(fromId);
  from.textContent = mine ? "You" : sender ? sender.user : "Someone who left";
  if (to === "me") from.textContent += " (to you)";
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = message;
  item.append(from, text);
  if (mine) item.classList.add("mine");
  const log = $("chat-log");
  log.append(item);
  log.scrollTop = log.scrollHeight;
  if (!mine && $("tab-chat").hidden) {
    state.unread += 1;
    $("chat-unread").textContent = String(state.unread);
    $("chat-unread").hidden = false;
  }
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message || !state.client) return;
  try {
    await state.client.send(message);
    addChat(state.client.id, message, "all");
    input.value = "";
  } catch (error) {
    showNotice(`Message not sent: ${error.message}`, { timeout: 6000 });
  }
}

// -- hand raise and reactions (text signals, see tessera.js) -----------------------------

function isSignal(message) {
  try {
    return parseSignal(message) !== null;
  } catch {
    return true; // a broken signal: tessera.js logged it; it is not chat either
  }
}

async function toggleHand() {
  const client = state.client;
  if (!client) return;
  const button = $("hand-button");
  button.disabled = true;
  try {
    if (client.handRaised) await client.lowerHand();
    else await client.raiseHand();
    setPressed(button, client.handRaised, client.handRaised ? "Lower hand" : "Raise hand");
    renderParticipants();
  } catch (error) {
    showNotice(`Could not change your hand: ${error.message}`, { timeout: 6000 });
  } finally {
    button.disabled = false;
  }
}

const REACTION_NAMES = {
  "👍": "thumbs up",
  "👏": "applause",
  "😂": "laughter",
  "❤️": "love",
  "🎉": "celebration",
  "😮": "surprise",
};

function buildReactionPicker() {
  const picker = $("reaction-picker");
  picker.replaceChildren(
    ...REACTIONS.map((emoji) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "reaction";
      button.dataset.reaction = emoji;
      button.textContent = emoji;
      const label = `React with ${REACTION_NAMES[emoji] || emoji}`;
      button.title = label;
      button.setAttribute("aria-label", label);
      button.addEventListener("click", () => sendReaction(emoji));
      return button;
    }),
  );
}

function toggleReactionPicker(open = $("reaction-picker").hidden) {
  $("reaction-picker").hidden = !open;
  $("react-button").setAttribute("aria-expanded", String(open));
}

async function sendReaction(emoji) {
  const client = state.client;
  toggleReactionPicker(false);
  if (!client) return;
  try {
    await client.sendReaction(emoji);
    showReaction(client.id, emoji);
  } catch (error) {
    showNotice(`Reaction not sent: ${error.message}`, { timeout: 6000 });
  }
}

function showReaction(fromId, emoji) {
  const item = document.createElement("li");
  item.dataset.from = fromId;
  const face = document.createElement("span");
  face.className = "emoji";
  face.textContent = emoji;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = nameOf(fromId);
  item.append(face, who);
  const feed = $("reaction-feed");
  feed.append(item);
  while (feed.children.length > 6) feed.firstElementChild.remove();
  setTimeout(() => item.remove(), 6000);
}

// -- live captions -----------------------------------------------------------------------------

const CAPTION_LINES = 3; // shown at once, newest last
const CAPTION_HOLD = 5000; // ms a line stays after its last words
const CAPTION_FADE = 1000; // ms it takes to fade out (app.css: .captions li.fading)

/** A `caption` push: the speaker's words as they are recognised (partial, then final). */
function showCaption(caption) {
  if (!state.captionsSeen) {
    // A room without captions sends none: the control appears with the first one.
    state.captionsSeen = true;
    $("captions-button").hidden = false;
    $("captions").hidden = !state.captionsOn;
  }
  const text = String(caption.text || "").trim();
  const list = $("captions");
  let line = [...list.children].find((li) => li.dataset.caption === String(caption.id));
  if (!text) {
    if (line) line.remove();
    return;
  }
  if (!line) {
    line = document.createElement("li");
    line.dataset.caption = String(caption.id);
    const speaker = document.createElement("span");
    speaker.className = "speaker";
    speaker.textContent = caption.user || nameOf(caption.participant);
    const words = document.createElement("span");
    words.className = "text";
    line.append(speaker, words);
    list.append(line);
    while (list.children.length > CAPTION_LINES) list.firstElementChild.remove();
  }
  line.querySelector(".text").textContent = text;
  line.dataset.final = String(Boolean(caption.final));
  line.classList.remove("fading");
  clearTimeout(line.fadeTimer);
  clearTimeout(line.removeTimer);
  line.fadeTimer = setTimeout(() => {
    line.classList.add("fading");
    line.removeTimer = setTimeout(() => line.remove(), CAPTION_FADE);
  }, CAPTION_HOLD);
}

function clearCaptions() {
  for (const line of $("captions").children) {
    clearTimeout(line.fadeTimer);
    clearTimeout(line.removeTimer);
  }
  $("captions").replaceChildren();
  $("captions").hidden = true;
}

function toggleCaptions() {
  state.captionsOn = !state.captionsOn;
  localStorage.setItem("tessera.captions", state.captionsOn ? "on" : "off");
  showCaptionsState();
  $("captions").hidden = !state.captionsOn || !state.captionsSeen;
}

function showCaptionsState() {
  const button = $("captions-button");
  setPressed(button, state.captionsOn, "Captions");
  button.title = state.captionsOn ? "Hide the live captions" : "Show the live captions";
}

// -- invite link ---------------------------------------------------------------------------

/** The page for this room: whoever opens it joins with a fresh token of their own. */
function inviteLink() {
  const url = new URL(location.pathname, location.origin);
  url.searchParams.set("room", state.room);
  return url.href;
}

async function copyInvite() {
  const link = inviteLink();
  state.inviteLink = link;
  try {
    if (!navigator.clipboard) throw new Error("no clipboard on this page (not https)");
    await navigator.clipboard.writeText(link);
    showNotice(`Invite link copied: ${link}`, { timeout: 6000 });
  } catch (error) {
    // Without the clipboard people copy it from the notice themselves.
    showNotice(`Copy this invite link: ${link}`, { timeout: 20000 });
    console.warn(`tessera: invite link not copied: ${error.message}`);
  }
}

// -- device preview and level meters --------------------------------------------------------

function constraints(audio, video, { mic = "", camera = "" } = {}) {
  return {
    audio: audio ? { echoCancellation: true, noiseSuppression: true, ...(mic ? { deviceId: { exact: mic } } : {}) } : false,
    video: video
      ? {
          width: { ideal: 640 },
          height: { ideal: 360 },
          frameRate: { ideal: 30 },
          ...(camera ? { deviceId: { exact: camera } } : {}),
        }
      : false,
  };
}

function stopPreview() {
  const stream = state.preview;
  state.preview = null;
  if (stream) for (const track of stream.getTracks()) track.stop();
  $("preview-video").srcObject = null;
  detachMeter("preview-level");
}

/** Start (or restart, with the devices chosen) the preview on the join screen. */
function startPreview() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showPreviewMessage("This browser gives the page no camera or microphone (an https address is needed).");
    return Promise.resolve();
  }
  const devices = { camera: $("camera-select").value, mic: $("mic-select").value };
  const run = (async () => {
    await state.previewStarting; // one getUserMedia at a time
    stopPreview();
    $("preview-placeholder").hidden = false;
    $("preview-placeholder").textContent = "Starting your camera…";
    let stream = null;
    let firstError = null;
    // Both, else what there is (no camera, or no microphone).
    for (const [audio, video] of [[true, true], [true, false], [false, true]]) {
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraints(audio, video, devices));
        break;
      } catch (error) {
        firstError = firstError || error;
        if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) break;
      }
    }
    if (!stream) {
      $("preview-placeholder").textContent = "No camera";
      showPreviewMessage(explainMediaError(firstError));
      return;
    }
    state.preview = stream;
    $("preview-video").srcObject = stream;
    $("preview-placeholder").hidden = stream.getVideoTracks().length > 0;
    $("preview-placeholder").textContent = "No camera";
    attachMeter("preview-level", stream);
    showPreviewMessage("");
    await listDevices(stream);
  })();
  state.previewStarting = run.catch(() => {});
  return run;
}

function showPreviewMessage(text) {
  $("preview-message").textContent = text;
  $("preview-message").hidden = !text;
}

async function listDevices(stream) {
  let devices;
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    return;
  }
  const current = {
    videoinput: stream.getVideoTracks()[0]?.getSettings().deviceId,
    audioinput: stream.getAudioTracks()[0]?.getSettings().deviceId,
  };
  for (const [kind, id, noun] of [
    ["videoinput", "camera-select", "Camera"],
    ["audioinput", "mic-select", "Microphone"],
  ]) {
    const found = devices.filter((d) => d.kind === kind && d.deviceId);
    $(id).replaceChildren(
      ...found.map((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || `${noun} ${i + 1}`;
        option.selected = d.deviceId === current[kind];
        return option;
      }),
    );
    $(id).disabled = found.length === 0;
  }
}

/**
 * The previewed media for publishing, trimmed to what the role may send (null without a
 * preview). The join screen's preview is handed over, not stopped.
 */
async function takePreview(audio, video) {
  await state.previewStarting;
  const stream = state.preview;
  if (!stream || stream.getTracks().every((t) => t.readyState === "ended")) return null;
  state.preview = null;
  $("preview-video").srcObject = null;
  detachMeter("preview-level");
  for (const track of stream.getTracks()) {
    if ((track.kind === "audio" && !audio) || (track.kind === "video" && !video)) {
      track.stop();
      stream.removeTrack(track);
    }
  }
  return stream.getTracks().length ? stream : null;
}

const meters = new Map(); // meter element id -> {source, analyser, samples}
let meterTimer = null;
let audioContext = null;

function attachMeter(id, stream) {
  detachMeter(id);
  if (!stream.getAudioTracks().length || typeof AudioContext === "undefined") return;
  if (!audioContext) {
    audioContext = new AudioContext();
    // Browsers start an AudioContext suspended until the page is used: resume on first use.
    const resume = () => audioContext.resume().catch(() => {});
    for (const name of ["pointerdown", "keydown"]) document.addEventListener(name, resume, { once: true });
    resume();
  }
  const source = audioContext.createMediaStreamSource(stream);
  const analyser = audioContext.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  meters.set(id, { source, analyser, samples: new Float32Array(analyser.fftSize) });
  if (!meterTimer) meterTimer = setInterval(updateMeters, 50);
}

function detachMeter(id) {
  const meter = meters.get(id);
  if (meter) {
    meter.source.disconnect();
    meters.delete(id);
  }
  state.levels[id] = 0;
  showLevel(id, 0);
  if (!meters.size && meterTimer) {
    clearInterval(meterTimer);
    meterTimer = null;
  }
}

function updateMeters() {
  for (const [id, meter] of meters) {
    meter.analyser.getFloatTimeDomainData(meter.samples);
    let sum = 0;
    for (const v of meter.samples) sum += v * v;
    const rms = Math.sqrt(sum / meter.samples.length);
    // -60 dBFS .. 0 dBFS on the bar; it falls back slowly, as meters do, so a short sound shows.
    const level = Math.min(1, Math.max(0, (20 * Math.log10(rms || 1e-9) + 60) / 60));
    const shown = Math.max(level, (state.levels[id] || 0) - 0.03);
    state.levels[id] = shown;
    showLevel(id, shown);
  }
}

function showLevel(id, level) {
  const element = $(id);
  if (!element) return;
  element.setAttribute("aria-valuenow", String(Math.round(level * 100)));
  element.querySelector(".bar").style.width = `${Math.round(level * 100)}%`;
}

// -- layout and recordings (moderators) -----------------------------------------------------

async function changeLayout() {
  const select = $("layout-select");
  try {
    const reply = await demo("PUT", "/demo/layout", { base: select.value });
    showLayout(reply.base);
  } catch (error) {
    showLayout(state.layoutBase); // the menu shows what the room shows, not the refused choice
    showNotice(`Cannot change the layout: ${error.message}`, { timeout: 6000 });
  }
}

/** Show the region set the room's view shows now in the layout menu (moderators). */
async function refreshLayout() {
  const client = state.client;
  let reply;
  try {
    reply = await demo("GET", "/demo/layout");
  } catch {
    return; // no demo endpoints here: the menu keeps what it shows
  }
  if (state.client === client) showLayout(reply.base);
}

function showLayout(base) {
  state.layoutBase = base;
  const select = $("layout-select");
  if (base && [...select.options].some((o) => o.value === base)) select.value = base;
}

async function toggleRecording() {
  const button = $("record-button");
  button.disabled = true;
  try {
    if (state.recording) await demo("DELETE", `/demo/recordings/${state.recording}`);
    else await demo("POST", "/demo/recordings", {});
    await refreshRecordings();
  } catch (error) {
    showNotice(`Recording: ${error.message}`, { timeout: 6000 });
  } finally {
    button.disabled = false;
  }
}

function formatDuration(seconds) {
  const s = Math.round(seconds || 0);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function formatSize(bytes) {
  if (bytes > 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.round((bytes || 0) / 1e3)} kB`;
}

async function refreshRecordings() {
  if (!state.client) return;
  let recordings;
  try {
    recordings = await demo("GET", "/demo/recordings");
  } catch {
    return; // no demo endpoints here (or not on loopback): the tab stays empty
  }
  const running = recordings.find((r) => r.state === "recording");
  state.recording = running ? running.id : null;
  $("recording-indicator").hidden = !running;
  setPressed($("record-button"), Boolean(running), running ? "Stop recording" : "Record");
  $("recordings-empty").hidden = recordings.length > 0;
  $("recording-list").replaceChildren(
    ...recordings
      .slice()
      .reverse()
      .map((r) => {
        const item = document.createElement("li");
        item.dataset.recording = r.id;
        const text = document.createElement("div");
        const title = document.createElement("div");
        title.textContent = new Date(r.startTime).toLocaleString();
        const meta = document.createElement("div");
        meta.className = "meta";
        meta.textContent = `${r.state} · ${formatDuration(r.duration)} · ${formatSize(r.size)} · ${r.container}`;
        text.append(title, meta);
        item.append(text);
        if (r.download) {
          const link = document.createElement("a");
          link.href = r.download;
          link.textContent = "Download";
          link.setAttribute("download", "");
          item.append(link);
        }
        return item;
      }),
  );
}

// -- wiring -----------------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    const active = tab.dataset.tab === name;
    tab.classList.toggle("active", active);
    tab.setAttribute("aria-selected", String(active));
    $(`tab-${tab.dataset.tab}`).hidden = !active;
  }
  if (name === "chat") {
    state.unread = 0;
    $("chat-unread").hidden = true;
  }
}

function start() {
  const params = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  $("room").value = params.get("room") || localStorage.getItem("tessera.room") || "default";
  $("name").value = localStorage.getItem("tessera.name") || "";
  $("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = $("name").value.trim();
    const room = $("room").value.trim();
    if (!user) return showJoinError("Please enter your name.");
    if (!room) return showJoinError("Please enter a room name.");
    localStorage.setItem("tessera.name", user);
    localStorage.setItem("tessera.room", room);
    const url = new URL(location.href);
    url.searchParams.set("room", room);
    history.replaceState(null, "", url);
    await join({ user, room, role: $("role").value });
  });
  $("mic-button").addEventListener("click", () => toggleMute("audio"));
  $("camera-button").addEventListener("click", () => toggleMute("video"));
  $("screen-button").addEventListener("click", toggleScreen);
  $("layout-select").addEventListener("change", changeLayout);
  state.captionsOn = localStorage.getItem("tessera.captions") !== "off";
  showCaptionsState();
  $("captions-button").addEventListener("click", toggleCaptions);
  $("record-button").addEventListener("click", toggleRecording);
  $("leave-button").addEventListener("click", async () => {
    const client = state.client;
    if (client) await client.leave();
  });
  $("chat-form").addEventListener("submit", sendChat);
  $("hand-button").addEventListener("click", toggleHand);
  $("react-button").addEventListener("click", () => toggleReactionPicker());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("reaction-picker").hidden) toggleReactionPicker(false);
  });
  $("invite-button").addEventListener("click", copyInvite);
  $("hide-self-view").addEventListener("click", () => {
    state.selfViewHidden = !state.selfViewHidden;
    $("self-view").hidden = state.selfViewHidden;
    setPressed($("hide-self-view"), state.selfViewHidden, "");
    $("hide-self-view").textContent = state.selfViewHidden ? "Show self view" : "Hide self view";
  });
  $("camera-select").addEventListener("change", startPreview);
  $("mic-select").addEventListener("change", startPreview);
  buildReactionPicker();
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  }
  $("toggle-sidebar").addEventListener("click", () => {
    const stage = document.querySelector(".stage");
    stage.classList.toggle("no-sidebar");
    $("toggle-sidebar").setAttribute("aria-expanded", String(!stage.classList.contains("no-sidebar")));
  });
  window.addEventListener("beforeunload", () => {
    if (state.client) state.client.leave();
  });
  // URLSearchParams reads a "+" of the base64 token as a space; a token has no spaces.
  const token = (hash.get("token") || "").replaceAll(" ", "+");
  if (params.get("room")) $("name").focus(); // an invite: the room is set, the name is next
  startPreview();
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    join({ token, room: params.get("room") || "" });
  }
}

start();
