// The pack's panel styles, added to the page once. Colours follow ComfyUI's theme variables where it
// has them, so the panels read well on the dark and the light palette.
const STYLE_ID = "safety-steer-style";

const CSS = `
.ss-panel { box-sizing: border-box; width: 100%; height: 100%; overflow: auto; padding: 4px 6px;
  font: 11px/1.35 system-ui, sans-serif; color: var(--input-text, #ddd);
  background: var(--comfy-input-bg, #222); border-radius: 6px; }
.ss-panel * { box-sizing: border-box; }
.ss-head { display: flex; flex-wrap: wrap; gap: 4px 8px; align-items: center; margin-bottom: 4px; }
.ss-badge { padding: 0 6px; border-radius: 8px; font-weight: 600; white-space: nowrap; }
.ss-badge-ok { background: #1f5f46; color: #d6ffe9; }
.ss-badge-flag { background: #8a2b2b; color: #ffe0e0; }
.ss-badge-warn { background: #9a6a00; color: #fff4d6; }
.ss-muted { opacity: 0.75; }
.ss-prompt { border-top: 1px solid rgba(127,127,127,0.35); padding-top: 3px; margin-top: 3px; }
.ss-prompt-text { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 100%; }
.ss-row { display: grid; grid-template-columns: 92px 1fr 64px; gap: 4px; align-items: center; height: 14px; }
.ss-row-label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ss-inspector .ss-row { grid-template-columns: 84px 1fr 40px 0.8fr 34px; }
.ss-row-num { text-align: right; font-variant-numeric: tabular-nums; }
.ss-track { position: relative; height: 10px; background: rgba(127,127,127,0.18); border-radius: 2px; }
.ss-bar { position: absolute; top: 1px; height: 8px; border-radius: 2px; background: #3fb58b; }
.ss-bar-high { background: #d0573f; }
.ss-bar-before { top: 0; height: 5px; background: #d0573f; }
.ss-bar-after { top: 5px; height: 5px; background: #3fb58b; }
.ss-zero { position: absolute; top: -1px; bottom: -1px; width: 1px; background: rgba(200,200,200,0.6); }
.ss-threshold { position: absolute; top: -2px; bottom: -2px; width: 2px; background: #f2c14e; }
.ss-legend { display: flex; gap: 10px; margin-top: 3px; }
.ss-swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 3px; vertical-align: -1px; }
.ss-mixer-row { display: grid; grid-template-columns: 92px 1fr 34px 40px; gap: 4px; align-items: center; height: 18px; }
.ss-mixer-row input[type=range] { width: 100%; margin: 0; }
.ss-mixer select { width: 100%; margin-bottom: 4px; background: var(--comfy-menu-bg, #333); color: inherit;
  border: 1px solid rgba(127,127,127,0.5); border-radius: 4px; }
.ss-share { text-align: right; font-variant-numeric: tabular-nums; opacity: 0.85; }
`;

export function ensureStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  document.head.appendChild(style);
}

/** A new element with a class and optional text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
