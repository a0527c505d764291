// The web phone: places a call through the server (which runs the signed /voice webhook), then is the
// Twilio side of the Media Stream over the operator-only relay, and draws the call's live feed.
import { InboundBuilder, parseOutbound, stereoWav } from "/phone/static/media-stream.js";
import { renderTools, renderTranscript, renderTurns } from "/phone/static/call-render.js";

const $ = (id) => document.getElementById(id);
const ui = {
  tenant: $("tenant"), from: $("from"), call: $("call"), hangup: $("hangup"), status: $("status"),
  transcript: $("transcript"), turns: document.querySelector("#turns tbody"), tools: $("tools"),
  keypad: $("keypad"), level: $("level"), download: $("download"),
};

const phone = {
  state: "idle", ws: null, builder: null, node: null, context: null, media: null, feed: null, callSid: "",
  callerUlaw: [], agentPcm: [], events: [], transcript: [], markers: [], liveCaller: "", liveAgent: "",
  agentEntries: 0, callerEntries: 0,
};
window.phone = phone; // for tests and the curious: phone.state, phone.transcript

// A note in the transcript where it happened (after the entries the page has so far).
function mark(text) { phone.markers.push({ at: phone.transcript.length, text }); }

function setStatus(text) { ui.status.textContent = text; }

function setState(state) {
  phone.state = state;
  document.body.dataset.callState = state;
  ui.call.disabled = state !== "idle" && state !== "ended";
  ui.hangup.disabled = state !== "connecting" && state !== "live";
}

async function loadTenants() {
  const answer = await fetch("/phone/api/tenants");
  const { items } = await answer.json();
  ui.tenant.replaceChildren();
  for (const tenant of items) {
    for (const number of tenant.numbers) {
      const option = document.createElement("option");
      option.value = number;
      option.textContent = `${tenant.name} (${tenant.slug}) · ${number}`;
      option.dataset.tenantId = tenant.id;
      ui.tenant.append(option);
    }
  }
  const wanted = new URLSearchParams(location.search).get("tenant");
  if (wanted) {
    for (const option of ui.tenant.options) if (option.dataset.tenantId === wanted || option.textContent.includes(`(${wanted})`)) option.selected = true;
  }
}

function buildKeypad() {
  for (const digit of "123456789*0#") {
    const key = document.createElement("button");
    key.textContent = digit;
    key.addEventListener("click", () => {
      if (phone.state === "live") { phone.ws.send(phone.builder.dtmf(digit)); mark(`caller pressed ${digit}`); draw(); }
    });
    ui.keypad.append(key);
  }
}

async function call() {
  setState("connecting");
  Object.assign(phone, { callerUlaw: [], agentPcm: [], events: [], transcript: [], markers: [], liveCaller: "",
                         liveAgent: "", agentEntries: 0, callerEntries: 0 });
  ui.download.hidden = true;
  draw();
  try {
    setStatus("Placing the call (signed /voice webhook)…");
    const placed = await fetch("/phone/api/calls", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ to: ui.tenant.value, from: ui.from.value }),
    });
    const answer = await placed.json();
    if (!placed.ok) throw new Error(answer.error || `HTTP ${placed.status}`);
    phone.callSid = answer.call_sid;
    phone.builder = new InboundBuilder(answer.call_sid, answer.account_sid);
    followFeed(answer.call_sid);

    phone.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
    phone.context = new AudioContext();
    await phone.context.audioWorklet.addModule("/phone/static/phone-worklet.js");
    phone.node = new AudioWorkletNode(phone.context, "twilio-line", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
    phone.context.createMediaStreamSource(phone.media).connect(phone.node);
    phone.node.connect(phone.context.destination);
    phone.node.port.onmessage = (event) => fromAudioThread(event.data);
    await phone.context.resume();

    setStatus(`Stream ${answer.stream_url} (token in customParameters), through the signing relay…`);
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${answer.relay}`);
    phone.ws = ws;
    ws.onopen = () => {
      ws.send(phone.builder.connected());
      ws.send(phone.builder.start(answer.custom_parameters));
      phone.node.port.postMessage({ type: "go" });
      setState("live");
      setStatus(`Live: ${answer.call_sid}`);
    };
    ws.onmessage = (event) => fromService(event.data);
    ws.onclose = (event) => ended(event.code === 1000 ? "The call ended." : `The line closed (${event.code}).`);
  } catch (error) {
    ended(`Could not place the call: ${error.message}`);
  }
}

function fromService(text) {
  const message = parseOutbound(text, phone.builder.streamSid);
  if (!message) return;
  if (message.kind === "media") phone.node.port.postMessage({ type: "media", ulaw: message.ulaw }, [message.ulaw.buffer]);
  else if (message.kind === "mark") phone.node.port.postMessage({ type: "mark", name: message.name });
  else if (message.kind === "clear") {
    phone.node.port.postMessage({ type: "clear" });
    mark("✂ caller interrupted: the agent's audio was cleared");
    draw();
  }
}

function fromAudioThread(message) {
  if (message.type === "frame") {
    if (phone.state !== "live") return;
    phone.ws.send(phone.builder.media(message.ulaw));
    phone.callerUlaw.push(message.ulaw);
    phone.agentPcm.push(message.agent);
    let peak = 0;
    for (const b of message.ulaw) peak = Math.max(peak, Math.abs((~b & 0x7f) >> 4));
    ui.level.style.width = `${Math.min(100, peak * 14)}%`;
  } else if (message.type === "mark") {
    if (phone.ws && phone.ws.readyState === WebSocket.OPEN) phone.ws.send(phone.builder.mark(message.name));
  } else if (message.type === "cleared") {
    for (const name of message.marks) phone.ws.send(phone.builder.mark(name)); // Twilio echoes pending marks at once
  }
}

function followFeed(callSid) {
  if (phone.feed) phone.feed.close();
  phone.feed = new EventSource(`/phone/api/calls/${callSid}/events`);
  phone.feed.onmessage = (event) => {
    const view = JSON.parse(event.data);
    for (const e of view.events) {
      phone.events.push(e);
      if (e.kind === "caller_words") phone.liveCaller = e.final ? "" : e.text;
      else if (e.kind === "agent_words") phone.liveAgent += e.text;
      else if (e.kind === "after_stream") mark("after the stream Twilio would run: " + e.twiml.replace(/<\?xml[^>]*>/, ""));
    }
    const agents = view.transcript.filter((e) => e.role === "agent").length;
    const callers = view.transcript.filter((e) => e.role === "caller").length;
    if (agents > phone.agentEntries) phone.liveAgent = "";
    if (callers > phone.callerEntries) phone.liveCaller = "";
    phone.agentEntries = agents;
    phone.callerEntries = callers;
    phone.transcript = view.transcript;
    phone.turns = view.turns;
    draw();
  };
  phone.feed.addEventListener("end", () => phone.feed.close());
}

function draw() {
  renderTranscript(ui.transcript, phone.transcript, { caller: phone.liveCaller, agent: phone.liveAgent }, phone.markers);
  renderTurns(ui.turns, phone.turns || []);
  renderTools(ui.tools, phone.events);
}

function hangUp() {
  if (phone.ws && phone.ws.readyState === WebSocket.OPEN) {
    phone.ws.send(phone.builder.stop());
    phone.ws.close(1000);
  }
}

async function ended(reason) {
  if (phone.state === "ended") return;
  setState("ended");
  setStatus(reason);
  if (phone.node) phone.node.port.postMessage({ type: "stop" });
  if (phone.media) phone.media.getTracks().forEach((track) => track.stop());
  if (phone.context) await phone.context.close();
  if (phone.callerUlaw.length) {
    const join = (chunks, Type) => {
      const out = new Type(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) { out.set(c, at); at += c.length; }
      return out;
    };
    const wav = stereoWav(join(phone.callerUlaw, Uint8Array), join(phone.agentPcm, Int16Array));
    ui.download.href = URL.createObjectURL(wav);
    ui.download.download = `${phone.callSid}.wav`;
    ui.download.hidden = false;
    const saved = await fetch(`/phone/api/calls/${phone.callSid}/recording`, { method: "PUT", body: wav }).catch(() => null);
    phone.recordingSaved = Boolean(saved && saved.ok); // the call view's audio player and waveform read it
  }
}

ui.call.addEventListener("click", call);
ui.hangup.addEventListener("click", hangUp);
buildKeypad();
setState("idle");
loadTenants().catch((error) => setStatus(`Could not list tenants: ${error.message}`));
