// The call view: a tenant's live calls (the live feed) and recent calls (the tenant API, as the tenant).
import { el, renderTools, renderTranscript, renderTurns } from "/phone/static/call-render.js";

const $ = (id) => document.getElementById(id);
const ui = {
  tenant: $("tenant"), live: $("live"), recent: $("recent"), title: $("title"), summary: $("summary"),
  transcript: $("transcript"), turns: document.querySelector("#turns tbody"), tools: $("tools"),
  booking: $("booking"), audio: $("audio"), wave: $("wave"),
};
const view = { tenant: "", selected: "", feed: null, events: [] };
window.callView = view;

const api = async (path) => {
  const answer = await fetch(`/calls/api/${view.tenant}/${path}`);
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
};

async function loadTenants() {
  const { items } = await (await fetch("/phone/api/tenants")).json();
  for (const tenant of items) {
    const option = document.createElement("option");
    option.value = tenant.id;
    option.textContent = `${tenant.name} (${tenant.slug})`;
    ui.tenant.append(option);
  }
  const wanted = new URLSearchParams(location.search).get("tenant");
  if (wanted) for (const option of ui.tenant.options) if (option.value === wanted || option.textContent.includes(`(${wanted})`)) option.selected = true;
  view.tenant = ui.tenant.value;
  await refresh();
  const call = new URLSearchParams(location.search).get("call");
  if (call) await select(call);
}

function row(list, call, live) {
  const item = el("div", `row${call.call_sid === view.selected ? " selected" : ""}`);
  const when = new Date(call.started_at).toLocaleString();
  const badge = el("span", live ? "badge live" : "badge", live ? "live" : (call.outcome || call.status || ""));
  item.append(badge, document.createTextNode(` ${when} · ${call.from_number || ""} `), el("div", "muted", call.call_sid));
  item.addEventListener("click", () => select(call.call_sid));
  list.append(item);
}

async function refresh() {
  if (!view.tenant) return;
  const [live, recent] = await Promise.all([api("live"), api("calls?limit=20")]);
  ui.live.replaceChildren();
  if (!live.items.length) ui.live.append(el("div", "muted", "No call in progress."));
  for (const call of live.items) row(ui.live, call, true);
  ui.recent.replaceChildren();
  if (!recent.items.length) ui.recent.append(el("div", "muted", "No calls yet: try the web phone."));
  for (const call of recent.items) row(ui.recent, call, false);
}

async function select(callSid) {
  view.selected = callSid;
  view.events = [];
  if (view.feed) view.feed.close();
  ui.title.textContent = `Call ${callSid}`;
  await refresh();
  // Live and recent calls alike: the live feed has what this process saw (words as they came, tool calls).
  view.feed = new EventSource(`/phone/api/calls/${callSid}/events`);
  view.feed.onmessage = (event) => {
    const live = JSON.parse(event.data);
    view.events.push(...live.events);
    renderTools(ui.tools, view.events);
    if (!live.ended && live.transcript.length) {
      renderTranscript(ui.transcript, live.transcript);
      renderTurns(ui.turns, live.turns);
      ui.summary.textContent = `live · ${live.state}`;
    }
  };
  view.feed.addEventListener("end", () => { view.feed.close(); showStored(callSid); });
  await showStored(callSid);
}

async function showStored(callSid) {
  let record;
  try { record = await api(`calls/${callSid}`); } catch { return; } // not stored yet: still live
  const transcript = await api(`calls/${callSid}/transcript`);
  if (view.selected !== callSid) return;
  renderTranscript(ui.transcript, transcript.items);
  renderTurns(ui.turns, record.turn_metrics || []);
  ui.summary.textContent = `${record.from_number} → ${record.to_number} · ${record.status}` +
    `${record.outcome ? " · " + record.outcome : ""}${record.duration_s != null ? ` · ${record.duration_s} s` : ""}`;
  const { items } = await api("bookings?include_cancelled=true&limit=200");
  const booked = items.filter((b) => b.call_sid === callSid);
  ui.booking.replaceChildren();
  if (!booked.length) ui.booking.append(el("div", "muted", "No booking on this call."));
  for (const b of booked) {
    ui.booking.append(el("div", "", `${b.status}: ${b.notes || "appointment"} for ${b.customer_name}, ` +
      `${new Date(b.starts_at).toLocaleString()} (${b.customer_phone})`));
  }
  if (!view.events.some((e) => e.kind.startsWith("tool"))) {
    ui.tools.replaceChildren(el("div", "muted", "Tool calls are shown for calls this server run has seen."));
  }
  await showRecording(callSid);
}

async function showRecording(callSid) {
  const url = `/calls/recordings/${callSid}.wav`;
  const answer = await fetch(url);
  if (!answer.ok) { ui.audio.hidden = true; ui.wave.hidden = true; return; }
  const bytes = await answer.arrayBuffer();
  ui.audio.src = url;
  ui.audio.hidden = false;
  drawWave(new DataView(bytes));
}

// Both sides over time: caller above the line (green), agent below (blue).
function drawWave(data) {
  const canvas = ui.wave;
  canvas.hidden = false;
  const g = canvas.getContext("2d");
  const frames = (data.byteLength - 44) / 4;
  const columns = canvas.width;
  const per = Math.max(1, Math.floor(frames / columns));
  g.clearRect(0, 0, canvas.width, canvas.height);
  const mid = canvas.height / 2;
  for (let x = 0; x < columns && x * per < frames; x++) {
    let caller = 0, agent = 0;
    for (let i = x * per; i < Math.min(frames, (x + 1) * per); i++) {
      caller = Math.max(caller, Math.abs(data.getInt16(44 + i * 4, true)));
      agent = Math.max(agent, Math.abs(data.getInt16(46 + i * 4, true)));
    }
    g.fillStyle = "#12b76a"; g.fillRect(x, mid - (caller / 32768) * mid, 1, (caller / 32768) * mid);
    g.fillStyle = "#2e90fa"; g.fillRect(x, mid, 1, (agent / 32768) * mid);
  }
}

ui.tenant.addEventListener("change", () => { view.tenant = ui.tenant.value; refresh(); });
setInterval(() => refresh().catch(() => {}), 2000);
loadTenants().catch((error) => { ui.summary.textContent = `Could not load: ${error.message}`; });
