// Prompt Safety Inspector: after a run, its chart (per prompt, per category bars, threshold, flag)
// is drawn on the node from the node's `safety_inspector` ui payload.
import { app } from "../../scripts/app.js";
import { payload, showPanel } from "./lib/node_panel.js";
import { inspectorChartHeight, renderInspectorChart } from "./lib/inspector_chart.js";

app.registerExtension({
  name: "SafetySteer.PromptInspectorChart",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "SafetySteerPromptInspector") return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const data = payload(message, "safety_inspector");
      if (data) showPanel(this, "safety_inspector_chart", renderInspectorChart(data), inspectorChartHeight(data));
    };
  },
});
