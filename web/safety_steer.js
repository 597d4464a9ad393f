// Safety Steer frontend: workflows saved with the node ids from before the rename open with the new
// nodes. The other jobs have a module each: direction_links.js, report_text.js,
// prompt_inspector_chart.js, safety_meter_panel.js, category_mixer_panel.js (lib/ holds their parts).
import { app } from "../../scripts/app.js";

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
