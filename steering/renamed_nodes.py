"""Node ids before the 0.2 rename (every id now carries the pack's prefix), for migrating saved
workflows. Data only: the ComfyUI stubs, the frontend's on-load migration and `safety-steer
migrate-workflow` all read this one table."""

RENAMED_NODES = {
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
    "ApplySafeDIG": "SafetySteerApplySafeDIG",
}


def migrate_workflow(workflow: dict) -> tuple[dict, int]:
    """(the workflow with old node ids replaced, how many nodes changed), for the UI format
    (``nodes[].type``, subgraph definitions included) and the API format (``{id: {class_type}}``)."""
    changed = 0

    def rename_ui(nodes: list) -> None:
        nonlocal changed
        for node in nodes:
            if isinstance(node, dict) and node.get("type") in RENAMED_NODES:
                node["type"] = RENAMED_NODES[node["type"]]
                changed += 1

    if isinstance(workflow.get("nodes"), list):
        rename_ui(workflow["nodes"])
        for subgraph in (workflow.get("definitions") or {}).get("subgraphs") or []:
            rename_ui(subgraph.get("nodes") or [])
    else:
        for node in workflow.values():
            if isinstance(node, dict) and node.get("class_type") in RENAMED_NODES:
                node["class_type"] = RENAMED_NODES[node["class_type"]]
                changed += 1
    return workflow, changed
