// Nodes that report text after a run (V3 ui.PreviewText): show it on the node itself, in a
// read-only box, so the report is read where the steer is set up.
import { app } from "../../scripts/app.js";
import { el, ensureStyle } from "./lib/style.js";

const TEXT_NODES = new Set([
  "SafetySteerDirectionInfo", "SafetySteerReport", "SafetySteerApplyConditioning", "SafetySteerApplyTextEncoder",
]);

app.registerExtension({
  name: "SafetySteer.ReportText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text ?? []).join("\n");
      if (!text) return;
      let widget = this.widgets?.find((w) => w.name === "safety_steer_report");
      if (!widget) {
        ensureStyle();
        const box = el("textarea", "comfy-multiline-input ss-report");
        box.readOnly = true;
        box.dataset.role = "report-text";
        widget = this.addDOMWidget("safety_steer_report", "safety_steer_report", box, {
          serialize: false,
          getValue: () => box.value,
          setValue: (value) => { box.value = value; },
          getMinHeight: () => 90,
        });
        widget.serialize = false;
      }
      widget.element.value = text;
      this.setSize?.([Math.max(this.size[0], 420), Math.max(this.size[1], this.computeSize()[1])]);
      app.graph?.setDirtyCanvas(true, true);
    };
  },
});
