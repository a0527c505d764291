// The phone line's audio, on the audio thread: one AudioWorkletProcessor both captures and plays, so the
// caller's and the agent's sides share one clock (for barge-in timing and the two-sided WAV).
//
// Capture: microphone at the context's rate -> low-pass FIR (3.4 kHz) -> 8 kHz -> G.711 mu-law ->
//   one 160-byte frame per 20 ms, posted to the page (which sends it as a `media` message).
// Playback, with Twilio's rules: agent media is queued and played in order; a `mark` is echoed once every
//   byte queued before it has played; `clear` drops the queue and echoes every pending mark at once.

const RATE = 8000;
const FRAME = 160;
const TAPS = 63;
const CUTOFF_HZ = 3400;

function lowPass(rate) {
  const taps = new Float32Array(TAPS);
  const fc = CUTOFF_HZ / rate;
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const hamming = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * hamming;
    sum += taps[i];
  }
  for (let i = 0; i < TAPS; i++) taps[i] /= sum;
  return taps;
}

function pcmToUlaw(sample) {
  const BIAS = 0x84;
  const CLIP = 32635;
  let s = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  if (s > CLIP) s = CLIP;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

function ulawToFloat(byte) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 0x07;
  const magnitude = ((((u & 0x0f) << 3) + 0x84) << exponent) - 0x84;
  return ((u & 0x80) ? -magnitude : magnitude) / 32768;
}

class TwilioLine extends AudioWorkletProcessor {
  constructor() {
    super();
    this.running = false;
    // capture
    this.taps = lowPass(sampleRate);
    this.history = new Float32Array(TAPS);
    this.historyAt = 0;
    this.step = sampleRate / RATE;
    this.untilNext = 0;
    this.frame = new Uint8Array(FRAME);
    this.agentFrame = new Int16Array(FRAME);
    this.filled = 0;
    // playback: a queue of {samples, at} and {mark}
    this.queue = [];
    this.phase = 0;
    this.current = 0;
    this.previous = 0;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(message) {
    if (message.type === "go") this.running = true;
    else if (message.type === "stop") this.running = false;
    else if (message.type === "media") {
      const samples = new Float32Array(message.ulaw.length);
      for (let i = 0; i < samples.length; i++) samples[i] = ulawToFloat(message.ulaw[i]);
      this.queue.push({ samples, at: 0 });
    } else if (message.type === "mark") this.queue.push({ mark: message.name });
    else if (message.type === "clear") {
      const marks = this.queue.filter((item) => item.mark !== undefined).map((item) => item.mark);
      this.queue = [];
      this.port.postMessage({ type: "cleared", marks });
    }
  }

  echoDueMarks() {
    while (this.queue.length && this.queue[0].mark !== undefined) {
      this.port.postMessage({ type: "mark", name: this.queue.shift().mark });
    }
  }

  nextAgentSample() {
    this.echoDueMarks();
    const head = this.queue[0];
    if (!head) return null;
    const value = head.samples[head.at++];
    if (head.at >= head.samples.length) {
      this.queue.shift();
      this.echoDueMarks();
    }
    return value;
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    const output = outputs[0] && outputs[0][0];
    const length = output ? output.length : (input ? input.length : 128);
    if (!this.running) {
      if (output) output.fill(0);
      return true;
    }
    for (let i = 0; i < length; i++) {
      // playback: step through 8 kHz agent samples, interpolating up to the context rate
      this.phase += RATE / sampleRate;
      while (this.phase >= 1) {
        this.phase -= 1;
        this.previous = this.current;
        const next = this.nextAgentSample();
        this.current = next === null ? 0 : next;
      }
      if (output) output[i] = this.previous + (this.current - this.previous) * this.phase;
      // capture: filter every input sample, keep one per 1/8000 s
      const x = input ? input[i] : 0;
      this.history[this.historyAt] = x;
      this.historyAt = (this.historyAt + 1) % TAPS;
      this.untilNext -= 1;
      if (this.untilNext <= 0) {
        this.untilNext += this.step;
        let y = 0;
        for (let k = 0; k < TAPS; k++) y += this.taps[k] * this.history[(this.historyAt + k) % TAPS];
        this.frame[this.filled] = pcmToUlaw(y);
        this.agentFrame[this.filled] = Math.round(this.current * 32767);
        this.filled += 1;
        if (this.filled === FRAME) {
          this.port.postMessage({ type: "frame", ulaw: this.frame, agent: this.agentFrame,
                                  playing: this.queue.length > 0 });
          this.frame = new Uint8Array(FRAME);
          this.agentFrame = new Int16Array(FRAME);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("twilio-line", TwilioLine);
