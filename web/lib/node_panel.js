// Shows an HTML panel on a node as a DOM widget (ComfyUI's addDOMWidget), replacing the one shown
// after the previous run. Panels are views of a run's results: never saved in the workflow.
import { ensureStyle, el } from "./style.js";

export function showPanel(node, name, panel, height) {
  ensureStyle();
  let widget = node.widgets?.find((w) => w.name === name);
  if (!widget) {
    const holder = el("div", "ss-holder");
    holder.dataset.safetySteerPanel = name;
    widget = node.addDOMWidget(name, "safety_steer_panel", holder, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => widget.panelHeight,
      getHeight: () => widget.panelHeight,
    });
    widget.serialize = false;
  }
  widget.panelHeight = height;
  widget.element.dataset.ssNodeId = String(node.id);
  widget.element.replaceChildren(panel);
  const [width, wanted] = node.computeSize?.() ?? node.size;
  node.setSize?.([Math.max(node.size[0], width, 440), Math.max(wanted, node.size[1])]);
  node.setDirtyCanvas?.(true, true);
  return widget;
}

/** The one dict a V3 node sends under ``key`` in its ui output (ComfyUI wraps it in a list). */
export function payload(message, key) {
  const value = message?.[key];
  return Array.isArray(value) ? value[0] : value;
}

export function fmt(value, digits = 2) {
  return value === null || value === undefined || Number.isNaN(Number(value)) ? "–" : Number(value).toFixed(digits);
}

/** Pixels a muted text line of ``text`` takes in a panel about 420 px wide (0 when empty). */
export function textHeight(text, charsPerLine = 62) {
  return text ? 15 * Math.ceil(String(text).length / charsPerLine) : 0;
}
