// The admin page: rooms, participants and streams of one service over the REST API,
// with kick (DELETE participant) and mix/unmix (PATCH inViews). The service key is
// sent as `Authorization: Bearer <key>` and kept in sessionStorage (this tab only).
const $ = (id) => document.getElementById(id);
const KEY_ITEM = "tessera.admin.key";
let timer = null;

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: {
      Authorization: `Bearer ${sessionStorage.getItem(KEY_ITEM)}`,
      "Content-Type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Some answers are plain text ("Room deleted").
  }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || text || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  node.append(...children);
  return node;
}

function showError(id, message) {
  $(id).textContent = message;
  $(id).hidden = !message;
}

async function act(work) {
  showError("action-error", "");
  try {
    await work();
  } catch (error) {
    showError("action-error", error.message);
  }
  await refresh();
}

function participantTable(room, participants) {
  const body = element("tbody");
  for (const p of participants) {
    const kick = element("button", { text: "Kick", className: "danger", "data-kick": p.id });
    kick.addEventListener("click", () =>
      act(() => api("DELETE", `/v1/rooms/${encodeURIComponent(room.id)}/participants/${encodeURIComponent(p.id)}`)),
    );
    body.append(
      element("tr", { "data-participant": p.id },
        element("td", { text: p.user }),
        element("td", { text: p.role }),
        element("td", {}, element("code", { text: p.id })),
        element("td", {}, kick)),
    );
  }
  const head = element("thead", {}, element("tr", {},
    element("th", { text: "User" }), element("th", { text: "Role" }), element("th", { text: "Id" }), element("th")));
  return element("table", { className: "participants-table" }, head, body);
}

function streamTable(room, streams, views, participants) {
  const users = new Map(participants.map((p) => [p.id, p.user]));
  const body = element("tbody");
  for (const s of streams) {
    // OWT's REST stream format: one entry per kind under media (media.audio, media.video).
    const tracks = ["audio", "video"].filter((kind) => s.media[kind])
      .map((kind) => {
        const t = s.media[kind];
        return `${kind}${t.source ? ` (${t.source})` : ""}${t.status === "inactive" ? " paused" : ""}`;
      }).join(", ");
    const cell = element("td");
    if (s.type === "forward") {
      for (const view of views) {
        const mixed = (s.info.inViews || []).includes(view);
        const button = element("button", {
          text: `${mixed ? "Unmix from" : "Mix into"} ${view}`,
          "data-stream": s.id,
          "data-op": mixed ? "unmix" : "mix",
        });
        button.addEventListener("click", () =>
          act(() => api("PATCH", `/v1.1/rooms/${encodeURIComponent(room.id)}/streams/${encodeURIComponent(s.id)}`,
            [{ op: mixed ? "remove" : "add", path: "/info/inViews", value: view }])),
        );
        cell.append(button, " ");
      }
    }
    const owner = s.type === "forward"
      ? users.get(s.info.owner) || s.info.owner
      : `view ${s.info.label} · ${(s.info.layout || []).length} in layout`;
    body.append(element("tr", { "data-stream-row": s.id },
      element("td", {}, element("code", { text: s.id })),
      element("td", { text: s.type }),
      element("td", { text: owner }),
      element("td", { text: tracks }),
      cell));
  }
  const head = element("thead", {}, element("tr", {},
    element("th", { text: "Stream" }), element("th", { text: "Type" }), element("th", { text: "Owner / view" }),
    element("th", { text: "Tracks" }), element("th")));
  return element("table", { className: "streams-table" }, head, body);
}

async function refresh() {
  if (!sessionStorage.getItem(KEY_ITEM)) return;
  let rooms;
  try {
    rooms = await api("GET", "/v1/rooms");
  } catch (error) {
    if (error.status === 401 || error.status === 403) return signOut(`Signed out: ${error.message}`);
    return showError("action-error", error.message);
  }
  const sections = [];
  let people = 0;
  for (const room of rooms) {
    const base = `/v1/rooms/${encodeURIComponent(room.id)}`;
    let participants = [];
    let streams = [];
    try {
      [participants, streams] = await Promise.all([api("GET", `${base}/participants`), api("GET", `/v1.1/rooms/${encodeURIComponent(room.id)}/streams`)]);
    } catch {
      // A stored room nobody is in yet has nothing to list.
    }
    people += participants.length;
    const views = (room.views || []).map((v) => v.label);
    sections.push(element("section", { className: "room", "data-room": room.id },
      element("h2", { text: room.name }),
      element("code", { text: room.id }),
      element("h3", { text: `Participants (${participants.length})` }),
      participants.length ? participantTable(room, participants) : element("p", { className: "hint", text: "Nobody is in this room." }),
      element("h3", { text: `Streams (${streams.length})` }),
      streams.length ? streamTable(room, streams, views, participants) : element("p", { className: "hint", text: "No streams." })));
  }
  $("summary").textContent = `${rooms.length} room${rooms.length === 1 ? "" : "s"}, ${people} participant${people === 1 ? "" : "s"}`;
  $("rooms").replaceChildren(...sections);
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_ITEM);
  clearInterval(timer);
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("key-form").hidden = false;
  showError("key-error", message);
}

async function signIn(key) {
  sessionStorage.setItem(KEY_ITEM, key);
  try {
    await api("GET", "/v1/rooms?page=1&per_page=1");
  } catch (error) {
    return signOut(error.status === 401 ? "That key is not the key of a service." : error.message);
  }
  $("key-form").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  showError("key-error", "");
  await refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 3000);
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("service-key").value.trim());
});
$("sign-out").addEventListener("click", () => signOut());
$("refresh").addEventListener("click", refresh);
if (sessionStorage.getItem(KEY_ITEM)) signIn(sessionStorage.getItem(KEY_ITEM));
