// Safety Steer frontend extension: gives SAFETY_DIRECTION links and sockets their own colour, so
// a direction pack's path through a graph is easy to follow.
import { app } from "../../scripts/app.js";

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
