// Category Vector Mixer: the preset and seven weight widgets shown as one compact panel (the
// widgets stay on the node, hidden, and hold the values that are saved and queued).
import { app } from "../../scripts/app.js";
import { ensureStyle } from "./lib/style.js";
import { CATEGORIES, weightWidgetName } from "./lib/mixer_presets.js";
import { buildMixerPanel } from "./lib/mixer_panel.js";

const PANEL_WIDGETS = new Set(["preset", ...CATEGORIES.map(weightWidgetName)]);
const PANEL_HEIGHT = 26 + CATEGORIES.length * 20 + 18;

app.registerExtension({
  name: "SafetySteer.CategoryMixerPanel",
  async nodeCreated(node) {
    if (node.comfyClass !== "SafetySteerCategoryVectorMixer") return;
    ensureStyle();
    for (const w of node.widgets ?? []) {
      if (!PANEL_WIDGETS.has(w.name)) continue;
      w.hidden = true; // not drawn
      w.computeSize = () => [0, -4]; // and no room kept for it (the layout counts every widget)
    }
    const panel = buildMixerPanel(node);
    const holder = document.createElement("div");
    holder.dataset.ssNodeId = String(node.id);
    holder.append(panel);
    const widget = node.addDOMWidget("category_mix", "safety_steer_panel", holder, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => PANEL_HEIGHT,
      getHeight: () => PANEL_HEIGHT,
    });
    widget.serialize = false;
    // the panel stays the last widget: the frontend saves widget values by position, and a
    // non-saved widget before a saved one would shift them when the workflow is loaded again
    const refresh = () => {
      holder.dataset.ssNodeId = String(node.id); // the id is set when the node joins a graph
      panel.refresh();
    };
    refresh();
    const onAdded = node.onAdded;
    node.onAdded = function () {
      const result = onAdded?.apply(this, arguments);
      refresh();
      return result;
    };
    const onConfigure = node.onConfigure;
    node.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      refresh();
      return result;
    };
    const [width, height] = node.computeSize();
    node.setSize([Math.max(node.size[0], width, 340), height]);
  },
});
