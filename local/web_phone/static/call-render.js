// Drawing a call (transcript, interruptions, per-turn latency, tool calls): shared by /phone and /calls.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = (ms) => (ms === null || ms === undefined ? "–" : Math.round(ms).toString());

// entries: [{role, text, interrupted, heard}] ; live: {caller: "...", agent: "..."} words not final yet;
// markers: [{at, text}], drawn after the first `at` entries (where they happened)
export function renderTranscript(box, entries, live = {}, markers = []) {
  box.replaceChildren();
  const markersAt = (n) => { for (const m of markers) if (m.at === n) box.append(el("div", "marker", m.text)); };
  markersAt(0);
  entries.forEach((entry, index) => {
    const bubble = el("div", `bubble ${entry.role === "caller" ? "caller" : "agent"}${entry.interrupted ? " cut" : ""}`);
    bubble.append(el("div", "who", entry.role === "caller" ? "caller (heard as)" : "agent"), el("div", "text", entry.text));
    if (entry.interrupted) {
      bubble.append(el("div", "heard", `interrupted: the caller heard "${entry.heard ?? entry.heard_text ?? ""}"`));
    }
    box.append(bubble);
    markersAt(index + 1);
  });
  for (const m of markers) if (m.at > entries.length) box.append(el("div", "marker", m.text));
  if (live.caller) {
    const bubble = el("div", "bubble caller live");
    bubble.append(el("div", "who", "caller (hearing…)"), el("div", "text", live.caller));
    box.append(bubble);
  }
  if (live.agent) {
    const bubble = el("div", "bubble agent live");
    bubble.append(el("div", "who", "agent (speaking…)"), el("div", "text", live.agent));
    box.append(bubble);
  }
  box.scrollTop = box.scrollHeight;
}

export function renderTurns(tbody, turns) {
  tbody.replaceChildren();
  for (const t of turns) {
    const row = el("tr");
    row.append(el("td", "", `${t.turn}${t.barge_in ? " ✂" : ""}`), el("td", "", fmt(t.stt_ms)), el("td", "", fmt(t.llm_ttft_ms)),
               el("td", "", fmt(t.tts_ttfb_ms)), el("td", "", fmt(t.voice_to_voice_ms)));
    tbody.append(row);
  }
}

export function renderTools(box, events) {
  const tools = events.filter((e) => e.kind === "tool_call" || e.kind === "tool_result" || e.kind === "handoff");
  box.replaceChildren();
  if (!tools.length) { box.append(el("div", "muted", "None yet.")); return; }
  for (const e of tools) {
    const line = e.kind === "tool_call" ? `→ ${e.name}(${e.arguments ?? ""})`
      : e.kind === "tool_result" ? `← ${e.name}: ${e.output ?? ""}` : `⇢ handoff ${e.from} → ${e.to}`;
    box.append(el("div", "tool", line));
  }
}

export { el };
