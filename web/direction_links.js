// Gives direction-pack and aligned-direction links and sockets their own colour, so a direction
// pack's path through a graph is easy to follow.
import { app } from "../../scripts/app.js";

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
