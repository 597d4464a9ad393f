// The Prompt Safety Inspector's chart: per prompt, one bar per harm category (the source LLM's
// projection in benign-anchor units, 0 = the benign prompts' mean), the threshold as a line, and the
// prompt's flag and top category. Every number shown is the payload's own, rounded to 2 places.
import { el } from "./style.js";
import { fmt } from "./node_panel.js";

/** [low, high] of the shared axis: 0, the threshold and every bar fit on it. */
function axisRange(prompts, categories, threshold) {
  let low = 0;
  let high = Number.isFinite(threshold) ? threshold : 1;
  for (const prompt of prompts) {
    for (const category of categories) {
      const value = prompt.projection?.[category];
      if (Number.isFinite(value)) {
        low = Math.min(low, value);
        high = Math.max(high, value);
      }
    }
  }
  const pad = 0.05 * (high - low || 1);
  return [low - (low < 0 ? pad : 0), high + pad];
}

export function gateBadges(gate) {
  const badges = [];
  if (gate?.fallback) {
    const badge = el("span", "ss-badge ss-badge-warn", "⚠ gate fell back");
    badge.dataset.role = "fallback-badge";
    badge.title = gate.warning || "The source LLM was not available: the gate used the target projection.";
    badges.push(badge);
  }
  return badges;
}

export function renderInspectorChart(data) {
  const categories = data.categories ?? [];
  const prompts = data.prompts ?? [];
  const threshold = Number(data.threshold);
  const [low, high] = axisRange(prompts, categories, threshold);
  const at = (value) => `${(100 * (value - low)) / (high - low)}%`;

  const panel = el("div", "ss-panel ss-inspector");
  panel.dataset.role = "inspector-chart";
  panel.dataset.threshold = String(threshold);
  const head = el("div", "ss-head");
  const gate = data.gate ?? {};
  const gateText = el("span", "ss-muted", `gate: ${gate.kind ?? "?"}${gate.source ? ` (${gate.source})` : ""}`);
  gateText.dataset.role = "gate";
  head.append(gateText, el("span", "ss-muted", `threshold ${fmt(threshold)}`), ...gateBadges(gate));
  panel.append(head);
  if (gate.warning) {
    const warning = el("div", "ss-muted", gate.warning);
    warning.dataset.role = "gate-warning";
    panel.append(warning);
  }

  prompts.forEach((prompt, index) => {
    const block = el("div", "ss-prompt");
    block.dataset.role = "prompt";
    block.dataset.index = String(index);
    block.dataset.score = String(prompt.score);
    block.dataset.flagged = String(Boolean(prompt.flagged));
    block.dataset.topCategory = prompt.top_category ?? "";
    const title = el("div", "ss-head");
    const flag = prompt.flagged
      ? el("span", "ss-badge ss-badge-flag", "⚑ flagged")
      : el("span", "ss-badge ss-badge-ok", "✓ passes");
    flag.dataset.role = "flag";
    const score = el("span", "", `score ${fmt(prompt.score)}`);
    score.dataset.role = "score";
    const top = el("span", "ss-muted", `top: ${prompt.top_category ?? "–"}`);
    title.append(flag, score, top);
    const text = el("div", "ss-prompt-text ss-muted", prompt.prompt ?? "");
    text.title = prompt.prompt ?? "";
    block.append(title, text);

    for (const category of categories) {
      const value = prompt.projection?.[category];
      const row = el("div", "ss-row");
      row.dataset.role = "bar";
      row.dataset.category = category;
      row.dataset.value = String(value);
      row.dataset.detector = String(prompt.detector?.[category]);
      const track = el("div", "ss-track");
      const zero = el("div", "ss-zero");
      zero.style.left = at(0);
      track.append(zero);
      if (Number.isFinite(value)) {
        const bar = el("div", value >= threshold ? "ss-bar ss-bar-high" : "ss-bar");
        bar.style.left = at(Math.min(0, value));
        bar.style.width = `${(100 * Math.abs(value)) / (high - low)}%`;
        track.append(bar);
      }
      if (Number.isFinite(threshold)) {
        const line = el("div", "ss-threshold");
        line.style.left = at(threshold);
        line.dataset.role = "threshold";
        track.append(line);
      }
      const detector = prompt.detector?.[category];
      track.title = `${category}: projection ${fmt(value, 3)}` +
        (detector === undefined ? "" : `, detector ${fmt(detector, 3)}`);
      const label = el("span", "ss-row-label", category);
      if (category === prompt.top_category) label.style.fontWeight = "700";
      row.append(label, track, el("span", "ss-row-num", fmt(value)));
      block.append(row);
    }
    panel.append(block);
  });
  return panel;
}

/** Pixel height the chart needs for the payload. */
export function inspectorChartHeight(data) {
  const rows = (data.prompts?.length ?? 0) * ((data.categories?.length ?? 0) * 14 + 40);
  return Math.min(620, 34 + (data.gate?.warning ? 30 : 0) + rows);
}
