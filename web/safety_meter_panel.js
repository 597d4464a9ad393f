// The safety meter: after a run, every Apply node and Safety Steer Report shows per category the
// projection before and after, the gate that ran and the strength, from its `safety_meter` payload.
import { app } from "../../scripts/app.js";
import { payload, showPanel } from "./lib/node_panel.js";
import { renderSafetyMeter, safetyMeterHeight } from "./lib/safety_meter.js";

const METER_NODES = new Set([
  "SafetySteerApplyTextEncoder", "SafetySteerApplyConditioning", "SafetySteerApplyModel", "SafetySteerApplySafeDIG",
  "SafetySteerReport",
]);

app.registerExtension({
  name: "SafetySteer.SafetyMeter",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!METER_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const data = payload(message, "safety_meter");
      if (data) showPanel(this, "safety_meter", renderSafetyMeter(data), safetyMeterHeight(data));
    };
  },
});
