// Category Vector Mixer presets: a copy of steering/transfer/mixing.py PRESETS (a test keeps the two
// equal), so the panel can show the weights a named preset runs with.
export const CUSTOM = "custom (sliders)";

// JSON between the markers: tests/test_browser_ui.py reads it.
// presets-json-start
export const PRESETS = {
  "all categories": {"hate": 1.0, "harassment": 1.0, "violence": 1.0, "self-harm": 1.0, "sexual": 1.0, "shocking": 1.0, "illegal activity": 1.0},
  "sexual only": {"sexual": 1.0},
  "violence and gore": {"violence": 1.0, "shocking": 1.0},
  "hate and harassment": {"hate": 1.0, "harassment": 1.0},
  "self-harm": {"self-harm": 1.0},
  "illegal activity": {"illegal activity": 1.0}
};
// presets-json-end

export const CATEGORIES = ["hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity"];

/** The node's widget name for a category (nodes/directions/mixer.py weight_input_name). */
export function weightWidgetName(category) {
  return category.replaceAll(" ", "_").replaceAll("-", "_");
}

/** Each category's share of the mix: weight / sum of weights (0 when every weight is 0). */
export function normalisedWeights(weights) {
  const total = Object.values(weights).reduce((sum, w) => sum + Math.max(0, w), 0);
  return Object.fromEntries(Object.entries(weights).map(([c, w]) => [c, total > 0 ? Math.max(0, w) / total : 0]));
}
