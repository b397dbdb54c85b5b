// AMDM web extension (served from the pack's WEB_DIRECTORY, loaded by the ComfyUI frontend).
//
// Display only; it keeps no state of its own. Everything shown comes from the node's own `ui`
// output ("text" and "amdm_summary", a JSON string), which API-mode clients also get from
// /history/<prompt_id> and the websocket's `executed` message:
//   - on the Multi-Model Sampler (and Sweep), a read-only "run summary" box, filled after each run: the
//     aggregation window in steps and sigmas, evaluations per member (named by the member node's
//     title on the canvas), time; the base (specified) member is marked with a star. A run that
//     fails or is interrupted before the node reports clears the box: an old summary would describe
//     another run;
//   - the base model input of the Multi-Model Sampler / Guider / Sweep carries a star in its label.
// Both work in the classic LiteGraph canvas and in the Vue "Nodes 2.0" renderer: the star is part of
// the slot's label (each renderer draws the label; Nodes 2.0 never calls onDrawForeground), the
// summary is a DOM widget (each renderer places DOM widgets on the node).
// Nothing of it is saved: the summary box is serialised neither into the workflow nor into the API
// prompt, and the starred label is written back without the star when the workflow is saved.
// Frontend APIs used (checked against comfyui-frontend-package 1.32.9, 1.49.6 and 1.58.1):
// app.registerExtension, beforeRegisterNodeDef, nodeType.prototype.onNodeCreated / onConfigure /
// onSerialize / onExecuted, LGraphNode.addDOMWidget, app.graph.getNodeById, api events
// execution_start / executed / execution_success / execution_error / execution_interrupted.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SUMMARY_NODES = new Set(["AMDM_MultiModelSampler", "AMDM_MultiModelSweep"]);
const BASE_INPUT_NODES = new Set(["AMDM_MultiModelSampler", "AMDM_MultiModelGuider", "AMDM_MultiModelSweep"]);
const WIDGET_NAME = "amdm_run_summary";
const BASE_INPUT = "model";
const STAR = "\u2605";
const PLACEHOLDER = "run summary";
const FAILED_PLACEHOLDER = "the last run failed or was interrupted: no summary";

function num(v, digits = 4) {
  if (typeof v !== "number" || !isFinite(v)) return String(v);
  return String(Number(v.toFixed(digits)));
}

function nodeById(id) {
  const graph = app.graph;
  if (!graph || id == null) return null;
  // node ids are numbers in some frontends, strings in others
  return graph.getNodeById(id) ?? graph.getNodeById(Number(id)) ?? graph.getNodeById(String(id)) ?? null;
}

// The member's node id: a field of the summary if the pack gives one, else the "(node #ID)" that
// every member label ends with (nodes/members.py member_label).
function memberNodeId(m) {
  if (m.node_id != null) return String(m.node_id);
  const match = /\(node #([^)]+)\)\s*$/.exec(m.label ?? "");
  return match ? match[1] : null;
}

// How the summary names a member: the base is the sampler's own (starred) base model input; a
// helper is named by its Multi-Model Member node's title, as the canvas shows it (the canvas shows
// no node ids by default). The pack's label is the fallback when the node is not in this graph.
export function memberName(m, lookup = nodeById) {
  if (m.base) return "base model";
  const node = lookup(memberNodeId(m));
  const title = node?.title ?? node?.getTitle?.();
  return title ? String(title) : String(m.label);
}

// The run summary (nodes/summary.py build_summary) as lines of text.
export function formatSummary(s, lookup = nodeById) {
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
    const norm = m.normalized_weight == null ? "" : ` (normalized ${num(m.normalized_weight, 3)})`;
    lines.push(`${mark}${memberName(m, lookup)}: ${m.evaluations} evaluations`);
    lines.push(`    weight ${num(m.weight, 3)}${norm}, cfg ${num(m.cfg, 2)}`);
  }
  for (const label of s.switched_off || []) {
    lines.push(`  ${memberName({ label }, lookup)}: weight 0, not evaluated`);
  }
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

// In a Nodes 2.0 (Vue) node the DOM widget is laid out by the node's own flow: give the box room
// for a two-member summary (the classic canvas sizes DOM widgets itself, from getMinHeight).
function addStyle() {
  if (document.getElementById("amdm-run-summary-style")) return;
  const style = document.createElement("style");
  style.id = "amdm-run-summary-style";
  style.textContent = "[data-node-id] textarea.amdm-run-summary { min-height: 10em; width: 100%; box-sizing: border-box; }";
  document.head.appendChild(style);
}

function summaryWidget(node, create = true) {
  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (widget || !create) return widget ?? null;
  const el = document.createElement("textarea");
  el.className = "comfy-multiline-input amdm-run-summary";
  el.readOnly = true;
  el.spellcheck = false;
  el.placeholder = PLACEHOLDER;
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

function showSummary(node, text) {
  const widget = summaryWidget(node);
  widget.element.placeholder = PLACEHOLDER;
  widget.value = text;
  node.__amdmPendingPrompt = null;
  node.setDirtyCanvas?.(true, true);
}

function clearSummary(node) {
  const widget = summaryWidget(node, false);
  node.__amdmPendingPrompt = null;
  if (!widget) return;
  widget.value = "";
  widget.element.placeholder = FAILED_PLACEHOLDER;
  node.setDirtyCanvas?.(true, true);
}

// -- the base model input's star: in the slot label, which both renderers draw -----------------

// The star goes into the slot's label (what both renderers draw; a user's own label is kept
// behind the star) and into its localized_name (what the Nodes 2.0 renderer of frontends before
// about 1.40 draws instead of the label). Both are restored when the workflow is saved.
const PLAIN = "__amdmPlain";

function starBaseInput(node) {
  const slot = node.inputs?.find((i) => i.name === BASE_INPUT);
  if (!slot) return;
  const starred = (v) => typeof v === "string" && v.startsWith(STAR);
  const unstar = (v) => (starred(v) ? v.slice(STAR.length).trim() : v);
  if (slot[PLAIN] && starred(slot.label) && starred(slot.localized_name)) return;   // starred already
  const plain = { label: unstar(slot.label), localized_name: unstar(slot.localized_name) };
  if (plain.label != null && plain.label === plain.localized_name && starred(slot.label)) plain.label = undefined;
  const shown = plain.label || plain.localized_name || slot.name;
  Object.defineProperty(slot, PLAIN, { value: plain, writable: true, configurable: true, enumerable: false });
  slot.label = `${STAR} ${shown}`;
  slot.localized_name = `${STAR} ${plain.localized_name || slot.name}`;
}

function unstarSerialized(node, data) {
  const index = node.inputs?.findIndex((i) => i.name === BASE_INPUT) ?? -1;
  const saved = index >= 0 ? data?.inputs?.[index] : null;
  const plain = index >= 0 ? node.inputs[index][PLAIN] : null;
  if (!saved || saved.name !== BASE_INPUT || !plain) return;
  const copy = { ...saved };        // never touch the live slot
  for (const key of ["label", "localized_name"]) {
    if (plain[key] == null || plain[key] === "") delete copy[key];
    else copy[key] = plain[key];
  }
  data.inputs[index] = copy;
}

// -- a failed or interrupted run clears the old summary -----------------------------------------

function summaryNodes() {
  return (app.graph?.nodes || []).filter((n) => SUMMARY_NODES.has(n.comfyClass ?? n.type));
}

function watchRuns() {
  api.addEventListener("execution_start", (e) => {
    const promptId = e.detail?.prompt_id ?? true;
    for (const node of summaryNodes()) node.__amdmPendingPrompt = promptId;
  });
  const ended = (failed) => (e) => {
    const promptId = e.detail?.prompt_id ?? true;
    for (const node of summaryNodes()) {
      if (node.__amdmPendingPrompt == null) continue;
      if (promptId !== true && node.__amdmPendingPrompt !== true && node.__amdmPendingPrompt !== promptId) continue;
      if (failed) clearSummary(node);
      else node.__amdmPendingPrompt = null;    // not run (cached or not in the prompt): still valid
    }
  };
  api.addEventListener("execution_error", ended(true));
  api.addEventListener("execution_interrupted", ended(true));
  api.addEventListener("execution_success", ended(false));
}

// Chain `fn(node, ...args)` after a node type's own method (and any other extension's wrapper).
function after(nodeType, method, fn) {
  const original = nodeType.prototype[method];
  nodeType.prototype[method] = function () {
    const r = original?.apply(this, arguments);
    fn(this, ...arguments);
    return r;
  };
}

const EXTENSION_NAME = "amdm.RunSummary";
// ComfyUI 0.3.75 serves a pack's web folder twice when pyproject.toml's [tool.comfy] web and
// WEB_DIRECTORY both name it; register once.
if (!app.extensions?.some((e) => e.name === EXTENSION_NAME)) app.registerExtension({
  name: EXTENSION_NAME,
  setup() {
    addStyle();
    watchRuns();
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (SUMMARY_NODES.has(name)) {
      // the box is there from the start (empty until a run): the Nodes 2.0 renderer of older
      // frontends (1.32) shows only the widgets a node has when it is added to the graph
      after(nodeType, "onNodeCreated", (node) => summaryWidget(node));
      after(nodeType, "onExecuted", (node, output) => {
        const text = summaryFromOutput(output);
        if (text != null) showSummary(node, text);
      });
    }
    if (BASE_INPUT_NODES.has(name)) {
      after(nodeType, "onNodeCreated", (node) => starBaseInput(node));
      // loading a workflow replaces the slots with the file's (after onNodeCreated)
      after(nodeType, "onConfigure", (node) => starBaseInput(node));
      after(nodeType, "onSerialize", (node, data) => unstarSerialized(node, data));
    }
  },
});
