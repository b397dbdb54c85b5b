// AMDM web extension (served from the pack's WEB_DIRECTORY, loaded by the ComfyUI frontend).
//
// Display only; it keeps no state of its own. Everything shown comes from the node's own `ui`
// output ("text" and "amdm_summary", a JSON string), which API-mode clients also get from
// /history/<prompt_id> and the websocket's `executed` message:
//   - after a Multi-Model Sampler (or Sweep) runs, a read-only "run summary" box on the node: the
//     aggregation window in steps and sigmas, evaluations per member, time; the base (specified)
//     member is marked with a star;
//   - the base model input of the Multi-Model Sampler / Guider / Sweep is marked with a star on the
//     canvas (drawn, never saved into the workflow).
// The summary box is not serialised: it adds nothing to saved workflows or to the API prompt.
// Frontend APIs used (checked against comfyui-frontend-package 1.32.9): app.registerExtension,
// beforeRegisterNodeDef, nodeType.prototype.onExecuted, LGraphNode.addDOMWidget,
// LGraphNode.getInputPos, onDrawForeground.
import { app } from "../../scripts/app.js";

const SUMMARY_NODES = new Set(["AMDM_MultiModelSampler", "AMDM_MultiModelSweep"]);
const BASE_INPUT_NODES = new Set(["AMDM_MultiModelSampler", "AMDM_MultiModelGuider", "AMDM_MultiModelSweep"]);
const WIDGET_NAME = "amdm_run_summary";
const STAR = "\u2605";
const BASE_COLOR = "#f2c94c";

function num(v, digits = 4) {
  if (typeof v !== "number" || !isFinite(v)) return String(v);
  return String(Number(v.toFixed(digits)));
}

// The run summary (nodes/summary.py build_summary) as lines of text.
export function formatSummary(s) {
  const compose = s.operator === "compose";
  const name = compose ? "Compose" : "AMDM";
  const lines = [];
  if (s.window_steps) {
    const [a, b] = s.window_steps;
    const [sa, sb] = s.window_sigmas || [NaN, NaN];
    lines.push(`${name} window: steps ${a}-${b} of ${s.steps}`);
    lines.push(`  sigma ${num(sa)} -> ${num(sb)}, ${compose ? "composed" : s.aggregation}`);
  } else {
    const helpersRan = (s.members || []).slice(1).some((m) => m.evaluations > 0);
    lines.push(compose && helpersRan
      ? `${name}: handoff in ${s.steps} steps (one member per evaluation)`
      : `${name}: no window in ${s.steps} steps, base model alone`);
  }
  for (const m of s.members || []) {
    const mark = m.base ? `${STAR} ` : "  ";
    const tag = m.base ? " [base]" : "";
    const norm = m.normalized_weight == null ? "" : ` (normalized ${num(m.normalized_weight, 3)})`;
    lines.push(`${mark}${m.label}${tag}: ${m.evaluations} evaluations`);
    lines.push(`    weight ${num(m.weight, 3)}${norm}, cfg ${num(m.cfg, 2)}`);
  }
  for (const label of s.switched_off || []) lines.push(`  ${label}: weight 0, not evaluated`);
  const secs = typeof s.seconds === "number" ? s.seconds.toFixed(2) : String(s.seconds);
  lines.push(`total ${s.total_evaluations} evaluations in ${secs} s`);
  return lines.join("\n");
}

function summaryFromOutput(output) {
  const raw = output?.amdm_summary?.[0];
  if (raw) {
    try {
      return formatSummary(typeof raw === "string" ? JSON.parse(raw) : raw);
    } catch (e) {
      console.warn("[amdm] could not read amdm_summary", e);
    }
  }
  const text = output?.text;
  return Array.isArray(text) ? text.join("\n") : (text ?? null);
}

function summaryWidget(node) {
  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (widget) return widget;
  const el = document.createElement("textarea");
  el.className = "comfy-multiline-input amdm-run-summary";
  el.readOnly = true;
  el.spellcheck = false;
  el.placeholder = "run summary";
  Object.assign(el.style, { fontFamily: "monospace", fontSize: "11px", whiteSpace: "pre", overflow: "auto" });
  widget = node.addDOMWidget(WIDGET_NAME, "amdm_summary", el, {
    serialize: false,           // never in the API prompt
    getValue: () => el.value,
    setValue: (v) => { el.value = v ?? ""; },
    getMinHeight: () => 140,
  });
  widget.serialize = false;     // never in the saved workflow's widgets_values
  widget.element = el;
  const size = node.computeSize();
  node.setSize([Math.max(node.size[0], size[0], 360), Math.max(node.size[1], size[1])]);
  return widget;
}

function drawBaseMark(node, ctx) {
  if (node.flags?.collapsed || !node.inputs) return;
  const index = node.inputs.findIndex((i) => i.name === "model");
  if (index < 0 || typeof node.getInputPos !== "function") return;
  const [x, y] = node.getInputPos(index);
  const lx = x - node.pos[0];
  const ly = y - node.pos[1];
  ctx.save();
  ctx.fillStyle = BASE_COLOR;
  ctx.font = "bold 14px sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  ctx.fillText(STAR, lx - 9, ly);
  ctx.restore();
}

const EXTENSION_NAME = "amdm.RunSummary";
// ComfyUI 0.3.75 serves a pack's web folder twice when pyproject.toml's [tool.comfy] web and
// WEB_DIRECTORY both name it; register once.
if (!app.extensions?.some((e) => e.name === EXTENSION_NAME)) app.registerExtension({
  name: EXTENSION_NAME,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (SUMMARY_NODES.has(name)) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        onExecuted?.apply(this, arguments);
        const text = summaryFromOutput(output);
        if (text != null) {
          summaryWidget(this).value = text;
          this.setDirtyCanvas?.(true, true);
        }
      };
    }
    if (BASE_INPUT_NODES.has(name)) {
      const onDrawForeground = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const r = onDrawForeground?.apply(this, arguments);
        drawBaseMark(this, ctx);
        return r;
      };
    }
  },
});
