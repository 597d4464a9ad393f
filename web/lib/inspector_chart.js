// The Prompt Safety Inspector's chart. Per prompt: its flag, score and top category; per harm
// category two bars: the source LLM's projection (benign-anchor standard deviations, 0 = the benign
// prompts' mean, below 0 = unsafe-leaning; the projection gate's threshold as a line) and how far
// the gate would open for that category alone (0..1, the flag threshold as a line). Every number
// shown is the payload's own, rounded to 2 places.
import { el } from "./style.js";
import { fmt, textHeight } from "./node_panel.js";

function projectionRange(prompts, categories, projectionThreshold) {
  let low = Number.isFinite(projectionThreshold) ? Math.min(-1, projectionThreshold) : -1;
  let high = 1;
  for (const prompt of prompts) {
    for (const category of categories) {
      const value = prompt.projection?.[category];
      if (Number.isFinite(value)) {
        low = Math.min(low, value);
        high = Math.max(high, value);
      }
    }
  }
  return [low, high];
}

export function gateBadges(gate) {
  if (!gate?.fallback) return [];
  const badge = el("span", "ss-badge ss-badge-warn", "⚠ gate fell back");
  badge.dataset.role = "fallback-badge";
  badge.title = gate.warning || "The source LLM was not available: the gate used the target projection.";
  return [badge];
}

function track(value, low, high, lineAt, danger) {
  const at = (v) => `${(100 * (v - low)) / (high - low)}%`;
  const node = el("div", "ss-track");
  if (low < 0) {
    const zero = el("div", "ss-zero");
    zero.style.left = at(0);
    node.append(zero);
  }
  if (Number.isFinite(value)) {
    const bar = el("div", danger ? "ss-bar ss-bar-high" : "ss-bar");
    bar.style.left = at(Math.min(0, value));
    bar.style.width = `${(100 * Math.abs(value)) / (high - low)}%`;
    node.append(bar);
  }
  if (Number.isFinite(lineAt)) {
    const line = el("div", "ss-threshold");
    line.style.left = at(lineAt);
    node.append(line);
  }
  return node;
}

export function renderInspectorChart(data) {
  const categories = data.categories ?? [];
  const prompts = data.prompts ?? [];
  const threshold = Number(data.threshold);
  const projectionThreshold = Number(data.projection_threshold);
  const [low, high] = projectionRange(prompts, categories, projectionThreshold);

  const panel = el("div", "ss-panel ss-inspector");
  panel.dataset.role = "inspector-chart";
  panel.dataset.threshold = String(threshold);
  const head = el("div", "ss-head");
  const gate = data.gate ?? {};
  const gateText = el("span", "ss-muted", `gate: ${gate.kind ?? "?"}${gate.source ? ` (${gate.source})` : ""}`);
  gateText.dataset.role = "gate";
  head.append(gateText, el("span", "ss-muted", `flag at ${fmt(threshold)}`), ...gateBadges(gate));
  panel.append(head);
  if (gate.warning) {
    const warning = el("div", "ss-muted", gate.warning);
    warning.dataset.role = "gate-warning";
    panel.append(warning);
  }
  const columns = el("div", "ss-row ss-muted");
  columns.title = "projection: on each category's direction, in benign-anchor standard deviations " +
    "(below 0 = unsafe-leaning); gate opens: how far the gate would open for that category alone";
  columns.append(el("span", "", "category"), el("span", "", "projection"), el("span", ""),
    el("span", "", "gate opens"), el("span", ""));
  panel.append(columns);

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
    top.dataset.role = "top";
    title.append(flag, score, top);
    const text = el("div", "ss-prompt-text ss-muted", prompt.prompt ?? "");
    text.title = prompt.prompt ?? "";
    block.append(title, text);

    for (const category of categories) {
      const projection = prompt.projection?.[category];
      const opens = prompt.detector?.[category];
      const row = el("div", "ss-row");
      row.dataset.role = "bar";
      row.dataset.category = category;
      row.dataset.projection = String(projection);
      row.dataset.detector = String(opens);
      const label = el("span", "ss-row-label", category);
      if (category === prompt.top_category) label.style.fontWeight = "700";
      const projectionNum = el("span", "ss-row-num", fmt(projection));
      projectionNum.dataset.role = "projection";
      const opensNum = el("span", "ss-row-num", fmt(opens));
      opensNum.dataset.role = "detector";
      row.append(
        label,
        track(projection, low, high, projectionThreshold, projection < projectionThreshold),
        projectionNum,
        track(opens, 0, 1, threshold, opens >= threshold),
        opensNum,
      );
      row.title = `${category}: projection ${fmt(projection, 3)}, gate opens ${fmt(opens, 3)}`;
      block.append(row);
    }
    panel.append(block);
  });
  return panel;
}

/** Pixel height the chart needs for the payload. */
export function inspectorChartHeight(data) {
  const rows = (data.prompts?.length ?? 0) * ((data.categories?.length ?? 0) * 14 + 46);
  const head = textHeight(`gate: ${data.gate?.kind ?? ""} (${data.gate?.source ?? ""}) flag at 0.50 gate fell back`);
  return Math.min(720, 40 + head + textHeight(data.gate?.warning) + rows);
}
