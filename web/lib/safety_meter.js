// The safety meter on Apply nodes and Safety Steer Report: per harm category, the prompt's
// projection before and after the steer (benign-anchor units), the gate that ran and the strength
// applied, with a warning badge when the gate fell back from the source LLM.
import { el } from "./style.js";
import { fmt, textHeight } from "./node_panel.js";
import { gateBadges } from "./inspector_chart.js";

function axisRange(categories, before, after) {
  let low = 0;
  let high = 1;
  for (const category of categories) {
    for (const value of [before?.[category], after?.[category]]) {
      if (Number.isFinite(value)) {
        low = Math.min(low, value);
        high = Math.max(high, value);
      }
    }
  }
  return [low, high + 0.05 * (high - low)];
}

function bar(className, value, at, span) {
  const node = el("div", className);
  node.style.left = at(Math.min(0, value));
  node.style.width = `${(100 * Math.abs(value)) / span}%`;
  return node;
}

export function renderSafetyMeter(data) {
  const categories = data.categories ?? [];
  const before = data.before ?? {};
  const after = data.after ?? {};
  const gate = data.gate ?? {};
  const [low, high] = axisRange(categories, before, after);
  const at = (value) => `${(100 * (value - low)) / (high - low)}%`;

  const panel = el("div", "ss-panel ss-meter");
  panel.dataset.role = "safety-meter";
  panel.dataset.strength = String(data.strength);
  panel.dataset.gateKind = gate.kind ?? "";
  panel.dataset.gateOpen = String(gate.open);
  panel.dataset.fallback = String(Boolean(gate.fallback));

  const head = el("div", "ss-head");
  const gateText = el("span", "", `gate: ${gate.kind ?? "?"}`);
  gateText.dataset.role = "gate";
  const open = el("span", "", `open ${gate.open === null || gate.open === undefined ? "–" : fmt(gate.open)}`);
  open.dataset.role = "gate-open";
  const strength = el("span", "", `strength ${fmt(data.strength)}`);
  strength.dataset.role = "strength";
  head.append(gateText, open, strength, ...gateBadges(gate));
  panel.append(head);
  if (gate.warning) {
    const warning = el("div", "ss-muted", gate.warning);
    warning.dataset.role = "gate-warning";
    panel.append(warning);
  }
  if (data.prompt) {
    const prompt = el("div", "ss-prompt-text ss-muted", `prompt: ${data.prompt}`);
    prompt.title = data.prompt;
    prompt.dataset.role = "prompt";
    panel.append(prompt);
  }
  if (data.note) {
    const note = el("div", "ss-muted", data.note);
    note.dataset.role = "note";
    panel.append(note);
  }

  for (const category of categories) {
    const b = before[category];
    const a = after[category];
    const row = el("div", "ss-row");
    row.dataset.role = "meter-row";
    row.dataset.category = category;
    row.dataset.before = String(b);
    row.dataset.after = String(a);
    const track = el("div", "ss-track");
    const zero = el("div", "ss-zero");
    zero.style.left = at(0);
    track.append(zero);
    if (Number.isFinite(b)) track.append(bar("ss-bar ss-bar-before", b, at, high - low));
    if (Number.isFinite(a)) track.append(bar("ss-bar ss-bar-after", a, at, high - low));
    track.title = `${category}: before ${fmt(b, 3)}, after ${fmt(a, 3)}`;
    row.append(el("span", "ss-row-label", category), track, el("span", "ss-row-num", `${fmt(b, 1)}→${fmt(a, 1)}`));
    panel.append(row);
  }
  const legend = el("div", "ss-legend ss-muted");
  for (const [name, colour] of [["before", "#d0573f"], ["after", "#3fb58b"]]) {
    const item = el("span", "", name);
    const swatch = el("span", "ss-swatch");
    swatch.style.background = colour;
    item.prepend(swatch);
    legend.append(item);
  }
  legend.append(el("span", "", "projection, benign-anchor units"));
  panel.append(legend);
  return panel;
}

export function safetyMeterHeight(data) {
  const head = textHeight(`gate: ${data.gate?.kind ?? ""} open 0.00 strength 0.00 gate fell back`);
  return 40 + head + (data.categories?.length ?? 0) * 14 + textHeight(data.gate?.warning) + textHeight(data.note) +
    (data.prompt ? 15 : 0);
}
