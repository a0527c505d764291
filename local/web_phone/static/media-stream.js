// Twilio Media Streams, the caller's side: every message Twilio sends on a <Connect><Stream> socket,
// built exactly as Twilio builds them (string sequenceNumber/chunk/timestamp, streamSid on all but
// `connected`), and the G.711 mu-law codec. No I/O here: phone.js owns the socket.

export const FRAME_BYTES = 160; // 20 ms of 8 kHz mu-law

function hex32() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class InboundBuilder {
  constructor(callSid, accountSid) {
    this.streamSid = "MZ" + hex32();
    this.callSid = callSid;
    this.accountSid = accountSid;
    this.sequence = 0;
    this.chunk = 0;
  }
  next() { this.sequence += 1; return String(this.sequence); }
  connected() { return JSON.stringify({ event: "connected", protocol: "Call", version: "1.0.0" }); }
  start(customParameters) {
    return JSON.stringify({
      event: "start", sequenceNumber: this.next(), streamSid: this.streamSid,
      start: {
        streamSid: this.streamSid, accountSid: this.accountSid, callSid: this.callSid, tracks: ["inbound"],
        customParameters, mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      },
    });
  }
  media(ulaw) {
    this.chunk += 1;
    return JSON.stringify({
      event: "media", sequenceNumber: this.next(), streamSid: this.streamSid,
      media: { track: "inbound", chunk: String(this.chunk), timestamp: String((this.chunk - 1) * 20),
               payload: toBase64(ulaw) },
    });
  }
  mark(name) {
    return JSON.stringify({ event: "mark", sequenceNumber: this.next(), streamSid: this.streamSid, mark: { name } });
  }
  dtmf(digit) {
    return JSON.stringify({ event: "dtmf", sequenceNumber: this.next(), streamSid: this.streamSid,
                            dtmf: { track: "inbound_track", digit } });
  }
  stop() {
    return JSON.stringify({ event: "stop", sequenceNumber: this.next(), streamSid: this.streamSid,
                            stop: { accountSid: this.accountSid, callSid: this.callSid } });
  }
}

// What the service sends: {event: media|mark|clear, streamSid, ...}. Anything else is dropped, as Twilio does.
export function parseOutbound(text, streamSid) {
  let message;
  try { message = JSON.parse(text); } catch { return null; }
  if (!message || message.streamSid !== streamSid) return null;
  if (message.event === "media" && message.media && typeof message.media.payload === "string") {
    return { kind: "media", ulaw: fromBase64(message.media.payload) };
  }
  if (message.event === "mark" && message.mark && typeof message.mark.name === "string") {
    return { kind: "mark", name: message.mark.name };
  }
  if (message.event === "clear") return { kind: "clear" };
  return null;
}

export function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Stereo PCM16 8 kHz WAV: left = caller, right = agent (as the simulator writes demo.wav).
export function stereoWav(callerUlaw, agentPcm) {
  const frames = Math.max(callerUlaw.length, agentPcm.length);
  const buffer = new ArrayBuffer(44 + frames * 4);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + frames * 4, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 2, true);
  view.setUint32(24, 8000, true); view.setUint32(28, 8000 * 4, true); view.setUint16(32, 4, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, frames * 4, true);
  for (let i = 0; i < frames; i++) {
    view.setInt16(44 + i * 4, i < callerUlaw.length ? ulawToPcm(callerUlaw[i]) : 0, true);
    view.setInt16(46 + i * 4, i < agentPcm.length ? agentPcm[i] : 0, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

export function ulawToPcm(byte) {
  const u = ~byte & 0xff;
  const sign = u & 0x80;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return sign ? -magnitude : magnitude;
}
