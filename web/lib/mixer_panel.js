// Category Vector Mixer as one compact panel: the preset and seven sliders, each with its share of
// the mix. The panel edits the node's own widgets (hidden beneath it), so what is saved and queued is
// exactly what the panel shows. Choosing a preset sets the sliders to its weights; moving a slider
// switches to the custom preset.
import { el } from "./style.js";
import { CATEGORIES, CUSTOM, PRESETS, normalisedWeights, weightWidgetName } from "./mixer_presets.js";

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function setWidget(node, name, value) {
  const target = widget(node, name);
  if (!target || target.value === value) return;
  target.value = value;
  target.callback?.(value, globalThis.app?.canvas, node);
}

function currentWeights(node) {
  return Object.fromEntries(CATEGORIES.map((c) => [c, Number(widget(node, weightWidgetName(c))?.value ?? 0)]));
}

export function buildMixerPanel(node) {
  const panel = el("div", "ss-panel ss-mixer");
  panel.dataset.role = "mixer-panel";
  const select = el("select");
  select.dataset.role = "preset";
  const presetWidget = widget(node, "preset");
  for (const name of presetWidget?.options?.values ?? [CUSTOM, ...Object.keys(PRESETS)]) {
    const option = el("option", "", name);
    option.value = name;
    select.append(option);
  }
  panel.append(select);

  const rows = {};
  for (const category of CATEGORIES) {
    const name = weightWidgetName(category);
    const options = widget(node, name)?.options ?? {};
    const row = el("div", "ss-mixer-row");
    row.dataset.category = category;
    const slider = el("input");
    slider.type = "range";
    slider.min = String(options.min ?? 0);
    slider.max = String(options.max ?? 2);
    slider.step = String(options.step ?? 0.05);
    slider.dataset.role = "weight";
    slider.dataset.widget = name;
    const value = el("span", "ss-share");
    value.dataset.role = "value";
    const share = el("span", "ss-share");
    share.dataset.role = "share";
    share.title = "share of the mix: weight / sum of weights";
    row.append(el("span", "ss-row-label", category), slider, value, share);
    panel.append(row);
    rows[category] = { slider, value, share, row };
    slider.addEventListener("input", () => {
      setWidget(node, "preset", CUSTOM);
      setWidget(node, name, Number(slider.value));
      refresh();
    });
    // let the canvas keep its own pointer handling off the sliders
    slider.addEventListener("pointerdown", (event) => event.stopPropagation());
  }
  const footer = el("div", "ss-muted", "");
  footer.dataset.role = "summary";
  panel.append(footer);

  select.addEventListener("change", () => {
    setWidget(node, "preset", select.value);
    const weights = PRESETS[select.value];
    if (weights) for (const c of CATEGORIES) setWidget(node, weightWidgetName(c), weights[c] ?? 0);
    refresh();
  });

  function refresh() {
    select.value = widget(node, "preset")?.value ?? CUSTOM;
    // a named preset runs with its own weights, whatever the (ignored) sliders hold
    const preset = PRESETS[select.value];
    const weights = preset ? Object.fromEntries(CATEGORIES.map((c) => [c, preset[c] ?? 0])) : currentWeights(node);
    const shares = normalisedWeights(weights);
    for (const category of CATEGORIES) {
      const { slider, value, share, row } = rows[category];
      slider.value = String(weights[category]);
      value.textContent = weights[category].toFixed(2);
      share.textContent = `${Math.round(100 * shares[category])}%`;
      share.dataset.share = String(shares[category]);
      row.style.opacity = weights[category] > 0 ? "1" : "0.5";
    }
    const used = CATEGORIES.filter((c) => weights[c] > 0).length;
    footer.textContent = used ? `${used} of ${CATEGORIES.length} categories in the mix` : "every weight is 0: the node will refuse to run";
    node.setDirtyCanvas?.(true, true);
  }
  panel.refresh = refresh;
  return panel;
}
