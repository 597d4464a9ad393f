// Safety Steer frontend extension: gives SAFETY_DIRECTION links and sockets their own colour, so
// a direction pack's path through a graph is easy to follow.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const DIRECTION_COLOR = "#3fb58b";

app.registerExtension({
  name: "SafetySteer.DirectionLinks",
  async setup() {
    const canvas = globalThis.LGraphCanvas;
    if (canvas?.link_type_colors) {
      canvas.link_type_colors["SAFETY_DIRECTION"] = DIRECTION_COLOR;
    }
    if (app.canvas?.default_connection_color_byType) {
      app.canvas.default_connection_color_byType["SAFETY_DIRECTION"] = DIRECTION_COLOR;
    }
  },
});

// Nodes that report text after a run (V3 ui.PreviewText): show it on the node itself, in a
// read-only box, so the report is read where the steer is set up.
const TEXT_NODES = new Set(["SafetyDirectionInfo", "SafetySteerReport", "ApplySafetySteerConditioning"]);

app.registerExtension({
  name: "SafetySteer.ReportText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text ?? []).join("\n");
      let widget = this.widgets?.find((w) => w.name === "safety_steer_report");
      if (!widget) {
        widget = ComfyWidgets?.STRING?.(this, "safety_steer_report", ["STRING", { multiline: true }], app).widget
          ?? this.addWidget("text", "safety_steer_report", "", () => {}, {});
        if (widget.inputEl) widget.inputEl.readOnly = true;
        widget.serialize = false;
      }
      widget.value = text;
      if (widget.inputEl) widget.inputEl.value = text;
      this.setSize?.([Math.max(this.size[0], 420), Math.max(this.size[1], 220)]);
      app.graph?.setDirtyCanvas(true, true);
    };
  },
});
