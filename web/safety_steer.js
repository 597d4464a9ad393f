// Safety Steer frontend extension: gives direction-pack and aligned-direction links and sockets their own colour, so
// a direction pack's path through a graph is easy to follow.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const DIRECTION_COLOR = "#3fb58b";   // a pack, in its source model's space
const ALIGNED_COLOR = "#2f8fb5";     // directions aligned to this graph's text encoders

app.registerExtension({
  name: "SafetySteer.DirectionLinks",
  async setup() {
    const canvas = globalThis.LGraphCanvas;
    if (canvas?.link_type_colors) {
      canvas.link_type_colors["SAFETY_DIRECTION_PACK"] = DIRECTION_COLOR;
      canvas.link_type_colors["ALIGNED_SAFETY_DIRECTION"] = ALIGNED_COLOR;
    }
    if (app.canvas?.default_connection_color_byType) {
      app.canvas.default_connection_color_byType["SAFETY_DIRECTION_PACK"] = DIRECTION_COLOR;
      app.canvas.default_connection_color_byType["ALIGNED_SAFETY_DIRECTION"] = ALIGNED_COLOR;
    }
  },
});

// Node ids before the rename (steering/renamed_nodes.py is the source; a test keeps this copy equal):
// workflows saved with them are migrated when loaded, so they open with the new nodes.
const RENAMED_NODES = {
  "LoadSafetyDirection": "SafetySteerLoadDirection",
  "SafetyDirectionInfo": "SafetySteerDirectionInfo",
  "FitCrossModelAlignment": "SafetySteerFitCrossModelAlignment",
  "FitNativeDirection": "SafetySteerFitNativeDirection",
  "CategoryVectorMixer": "SafetySteerCategoryVectorMixer",
  "ApplySafetySteerCLIP": "SafetySteerApplyTextEncoder",
  "ApplySafetySteerConditioning": "SafetySteerApplyConditioning",
  "ApplySafetySteerModel": "SafetySteerApplyModel",
  "TrainSafetySAE": "SafetySteerTrainSAE",
  "LoadSafetySAE": "SafetySteerLoadSAE",
  "AdaptSafetySAEDecoder": "SafetySteerAdaptSAEDecoder",
  "ApplySafeDIG": "SafetySteerApplySafeDIG"
};

function renameNodes(nodes) {
  for (const node of nodes ?? []) {
    if (node && RENAMED_NODES[node.type]) node.type = RENAMED_NODES[node.type];
  }
}

app.registerExtension({
  name: "SafetySteer.RenamedNodes",
  beforeConfigureGraph(graphData) {
    renameNodes(graphData?.nodes);
    for (const subgraph of graphData?.definitions?.subgraphs ?? []) renameNodes(subgraph.nodes);
  },
});

// Nodes that report text after a run (V3 ui.PreviewText): show it on the node itself, in a
// read-only box, so the report is read where the steer is set up.
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
