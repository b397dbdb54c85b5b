// Drives the real ComfyUI frontend in Debian's Chromium through playwright-core, for
// tests/browser/test_browser.py. Usage: node drive.mjs CONFIG.json; prints one JSON report line
// (prefixed "AMDM_REPORT ") on stdout. Config:
//   { "url", "chromium", "playwright", "userDataDir", "screenshotDir", "timeoutMs",
//     "viewport": [w, h], "renderer": "classic" | "vue",
//     "workflows": [{"name", "path"}],            // UI-format files, each dropped onto the page
//     "templates": {"module", "titles"},          // the pack's category in the templates browser
//     "queue": {"name", "samplerNode", "saveNode", "widgets": {"<node id>": {"<widget>": value}},
//               "failWidgets": {...}, "timeoutMs", "screenshot"} }
// The renderer is chosen before the page opens (the setting Comfy.VueNodes.Enabled, through the
// settings API); the report says which one the page used.
// Per workflow it reports what the frontend made of the file, as it opened: missing node types
// (from the frontend's own afterConfigureGraph hook), open dialogs, the view (scale, offset) and
// every node's type/title/widgets/inputs, its rectangle on the screen (the Vue node's element, or
// the LiteGraph node box with its title) and whether its corners are covered by the frontend's
// chrome; then the re-serialised widgets_values and the frontend's own API prompt (graphToPrompt).
// For "templates" it opens the templates browser on the pack's category and reports which of the
// given titles it shows.
// For "queue" it presses the Run button, waits for the run summary on the Multi-Model Sampler,
// screenshots it, then queues a failing run (failWidgets) and reads the summary box again.
// Node ids are reported as strings: frontends before about 1.40 use numbers, later ones strings.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const require = createRequire(import.meta.url);
const { chromium } = require(config.playwright);
const timeout = config.timeoutMs ?? 60000;
const [vw, vh] = config.viewport ?? [1920, 1080];
const report = { console: [], pageErrors: [], workflows: {}, queue: null, timings: {}, renderer: config.renderer };
const t0 = Date.now();
const mark = (k) => { report.timings[k] = (Date.now() - t0) / 1000; };

// Installed into the page: what the frontend shows, the same way in both renderers.
function pageHelpers() {
  const vue = () => document.querySelector("[data-node-id]") !== null;
  const nodeEl = (id) => document.querySelector(`[data-node-id="${CSS.escape(String(id))}"]`);
  const titleH = () => window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  // screen rectangle of a node, title included
  const nodeRect = (n) => {
    const el = nodeEl(n.id);
    if (el) {
      const r = el.getBoundingClientRect();
      return { x: r.left, y: r.top, w: r.width, h: r.height, from: "dom" };
    }
    const canvas = window.app.canvas;
    const box = canvas.canvas.getBoundingClientRect();
    const { scale, offset } = canvas.ds;
    return { x: box.left + (n.pos[0] + offset[0]) * scale, y: box.top + (n.pos[1] - titleH() + offset[1]) * scale,
             w: n.size[0] * scale, h: (n.size[1] + titleH()) * scale, from: "litegraph" };
  };
  // what is drawn at a screen point: the graph (canvas, a node's element, a DOM widget) or chrome
  const describe = (e) => (e ? `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}.${String(e.className?.baseVal ?? e.className ?? "").trim().split(/\s+/).slice(0, 3).join(".")}` : "nothing");
  const graphAt = (x, y) => {
    if (x < 0 || y < 0 || x >= window.innerWidth || y >= window.innerHeight) return { ok: false, what: "outside the window" };
    const e = document.elementFromPoint(x, y);
    const ok = !!e && (e === window.app.canvas.canvas || !!e.closest("[data-node-id]") || !!e.closest(".dom-widget"));
    return { ok, what: describe(e) };
  };
  const corners = (r) => {
    const m = 6;
    const pts = [[r.x + m, r.y + m], [r.x + r.w - m, r.y + m], [r.x + m, r.y + r.h - m], [r.x + r.w - m, r.y + r.h - m]];
    return pts.map(([x, y]) => ({ x: Math.round(x), y: Math.round(y), ...graphAt(x, y) }));
  };
  const dialogs = (limit = 300) => [...document.querySelectorAll(".p-dialog, [role='dialog'], [role='alertdialog']")]
    .filter((d) => d.offsetParent !== null || d.getClientRects().length > 0)
    .map((d) => d.innerText.slice(0, limit));
  const slotLabel = (s) => s.renderingLabel ?? (s.label || s.localized_name || s.name);
  window.__amdm = { vue, nodeEl, nodeRect, corners, graphAt, dialogs, slotLabel, describe };
}

// Frame the whole graph in the part of the window that no toolbar or panel covers (for the
// screenshots only; the test reads the saved view before this).
async function fitView(page) {
  await page.evaluate(() => {
    const canvas = window.app.canvas;
    const box = canvas.canvas.getBoundingClientRect();
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of window.app.graph.nodes) {
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const left = 90 - box.left, top = 120 - box.top;
    const w = window.innerWidth - 120, h = window.innerHeight - 190;
    const scale = Math.min(w / (x1 - x0), h / (y1 - y0), 1.2);
    canvas.ds.scale = scale;
    canvas.ds.offset = [left / scale - x0, top / scale - y0];
    canvas.setDirty(true, true);
  });
  await page.waitForTimeout(600);
}

// The screen rectangle of the graph's nodes (titles included), for a tight screenshot.
async function graphClip(page) {
  const r = await page.evaluate(() => {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of window.app.graph.nodes) {
      const b = window.__amdm.nodeRect(n);
      x0 = Math.min(x0, b.x); y0 = Math.min(y0, b.y); x1 = Math.max(x1, b.x + b.w); y1 = Math.max(y1, b.y + b.h);
    }
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0, vw: window.innerWidth, vh: window.innerHeight };
  });
  const m = 16;
  const x = Math.max(0, r.x - m), y = Math.max(0, r.y - m);
  return { x, y, width: Math.min(r.vw - x, r.w + 2 * m), height: Math.min(r.vh - y, r.h + 2 * m) };
}

// The Run button, wherever this frontend puts it (its test id moved from a wrapper to the button
// itself around 1.40; older layouts call it "Queue"). null when none is visible.
async function runButton(page) {
  const candidates = [
    'button[data-testid="queue-button"]',
    '[data-testid="queue-button"] button',
    '.actionbar button:has-text("Run")',
    'button:has-text("Run")',
    'button:has-text("Queue")',
    "#queue-button",
  ];
  for (const sel of candidates) {
    const loc = page.locator(sel);
    const n = await loc.count();
    for (let i = 0; i < n; i++) {
      const b = loc.nth(i);
      if (await b.isVisible() && await b.isEnabled()) return { locator: b, selector: sel };
    }
  }
  return null;
}

const context = await chromium.launchPersistentContext(config.userDataDir, {
  executablePath: config.chromium,
  headless: true,
  viewport: { width: vw, height: vh },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) report.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)); });
  page.on("pageerror", (e) => report.pageErrors.push(String(e).slice(0, 500)));

  // a first-visit announcement banner would cover the top of the canvas
  await page.addInitScript(() => { try { localStorage.setItem("vueNodesBannerDismissed", "true"); } catch (e) {} });
  await page.goto(config.url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas && window.LiteGraph?.registered_node_types?.AMDM_MultiModelSampler,
                             null, { timeout });
  mark("app_ready");
  await page.evaluate(pageHelpers);
  // Record what the frontend itself reports as missing after each load (its afterConfigureGraph
  // hook receives the list it would show in the missing-nodes dialog), and the run events.
  await page.evaluate(async () => {
    window.__amdmMissing = [];
    window.__amdmEvents = [];
    window.app.registerExtension({
      name: "amdm.test.MissingNodeProbe",
      afterConfigureGraph(missing) { window.__amdmMissing.push((missing || []).map((m) => (typeof m === "string" ? m : m.type))); },
    });
    const { api } = await import("/scripts/api.js");
    for (const type of ["execution_start", "execution_error", "execution_success", "execution_interrupted"]) {
      api.addEventListener(type, (e) => window.__amdmEvents.push({ type, detail: e.detail ?? null }));
    }
  });
  report.extensions = await page.evaluate(() => window.app.extensions.map((e) => e.name).filter((n) => n.startsWith("amdm")));
  report.frontend = await page.evaluate(() => ({
    version: window.__COMFYUI_FRONTEND_VERSION__ ?? null,
    vueNodesSetting: window.app.ui?.settings?.getSettingValue?.("Comfy.VueNodes.Enabled") ?? null,
  }));
  await page.waitForTimeout(500);   // let the start-up workflow settle

  const dropWorkflow = async (wf) => {
    const text = fs.readFileSync(wf.path, "utf8");
    await page.evaluate(async ({ text, name }) => {
      window.__amdmMissing = [];
      const file = new File([text], name + ".json", { type: "application/json" });
      const dt = new DataTransfer();
      dt.items.add(file);
      const target = document.querySelector("canvas") || document.body;
      target.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, { text, name: wf.name });
    const expected = JSON.parse(text).nodes.length;
    await page.waitForFunction((n) => window.app.graph.nodes.length === n && window.__amdmMissing.length > 0, expected, { timeout });
    // Nodes 2.0 builds the node elements after the graph is configured
    await page.waitForFunction((n) => !window.__amdm.vue() || document.querySelectorAll("[data-node-id]").length === n,
                               expected, { timeout: 15000 }).catch(() => {});
    await page.waitForTimeout(800);
  };

  for (const wf of config.workflows) {
    await dropWorkflow(wf);
    const info = await page.evaluate(async () => {
      const app = window.app, h = window.__amdm;
      const nodes = app.graph.nodes.map((n) => {
        const el = h.nodeEl(n.id);
        const rect = h.nodeRect(n);
        return {
          id: String(n.id), type: n.type, title: n.title, comfyClass: n.comfyClass ?? null, pos: [...n.pos], size: [...n.size],
          registered: n.type in window.LiteGraph.registered_node_types,
          hasErrors: !!n.has_errors,
          rect, corners: h.corners(rect),
          inputs: (n.inputs || []).map((i) => ({ name: i.name, label: i.label ?? null, localized_name: i.localized_name ?? null,
                                                 shown: h.slotLabel(i), type: i.type, link: i.link ?? null, widget: i.widget?.name ?? null })),
          widgets: (n.widgets || []).map((w) => ({ name: w.name, type: w.type, value: typeof w.value === "object" ? null : w.value,
                                                    serialize: w.serialize !== false, toPrompt: w.options?.serialize !== false })),
          // Nodes 2.0: what the node's element shows (text, and the values of its input fields)
          dom: el ? { text: el.innerText, inputs: [...el.querySelectorAll("input, textarea")].map((x) => x.value),
                      labels: [...el.querySelectorAll("span, div")].filter((x) => x.children.length === 0).map((x) => x.textContent.trim()).filter(Boolean) } : null,
        };
      });
      const serialized = app.graph.serialize();
      const prompt = await app.graphToPrompt();
      return {
        nodes, view: { scale: app.canvas.ds.scale, offset: [...app.canvas.ds.offset] },
        vue: h.vue(),
        serializedNodes: Object.fromEntries(serialized.nodes.map((n) => [String(n.id), { widgets_values: n.widgets_values ?? null, inputs: n.inputs ?? [] }])),
        prompt: prompt.output, missing: window.__amdmMissing.flat(), dialogs: h.dialogs(),
      };
    });
    report.workflows[wf.name] = info;
    if (config.screenshotDir) {
      await page.screenshot({ path: path.join(config.screenshotDir, `${wf.name}.opened.png`) });
      await fitView(page);
      await page.screenshot({ path: path.join(config.screenshotDir, `${wf.name}.png`), clip: await graphClip(page) });
    }
  }
  mark("workflows_loaded");

  if (config.queue) {
    const q = config.queue;
    const setWidgets = (widgets) => page.evaluate((widgets) => {
      for (const [id, values] of Object.entries(widgets || {})) {
        const node = window.app.graph.getNodeById(id) ?? window.app.graph.getNodeById(Number(id));
        for (const [name, value] of Object.entries(values)) {
          const w = node.widgets.find((x) => x.name === name);
          w.value = value;
          w.callback?.(value);
        }
      }
      window.app.graph.setDirtyCanvas(true, true);
    }, widgets);
    const summaryState = (samplerId) => page.evaluate((samplerId) => {
      const h = window.__amdm;
      const boxes = [...document.querySelectorAll("textarea.amdm-run-summary")];
      const node = window.app.graph.getNodeById(samplerId) ?? window.app.graph.getNodeById(Number(samplerId));
      const el = h.nodeEl(samplerId);
      const box = boxes[0];
      const r = box?.getBoundingClientRect();
      const nr = h.nodeRect(node);
      return {
        boxes: boxes.length, value: box?.value ?? null, placeholder: box?.placeholder ?? null,
        // on the node: inside its element (Nodes 2.0), or inside its box on the canvas (classic)
        inNodeElement: el ? el.contains(box) : null,
        inNodeRect: r ? (r.left >= nr.x - 1 && r.top >= nr.y - 1 && r.right <= nr.x + nr.w + 1 && r.bottom <= nr.y + nr.h + 1) : null,
        visible: r ? r.width > 20 && r.height > 20 && h.graphAt(r.left + r.width / 2, r.top + r.height / 2).ok : false,
      };
    }, samplerId);
    const pressRun = async () => {
      const found = await runButton(page);
      if (!found) return null;
      await found.locator.click();
      return found.selector;
    };

    await dropWorkflow(config.workflows.find((w) => w.name === q.name));
    await setWidgets(q.widgets);
    const before = await summaryState(q.samplerNode);
    const pressed = await pressRun();
    if (!pressed) await page.evaluate(() => window.app.queuePrompt(0, 1));
    mark("queued");
    await page.waitForFunction(() => {
      const ta = document.querySelector("textarea.amdm-run-summary");
      return ta && ta.value && ta.value.includes("evaluations");
    }, null, { timeout: q.timeoutMs ?? timeout });
    mark("summary_shown");
    // the SaveImage node shows the saved image once the frontend has fetched it
    const imagesOf = (saveId) => page.evaluate((saveId) => {
      const n = window.app.graph.getNodeById(saveId) ?? window.app.graph.getNodeById(Number(saveId));
      const el = window.__amdm.nodeEl(saveId);
      const fromNode = (n?.imgs || []).map((img) => ({ src: img.src, w: img.naturalWidth, h: img.naturalHeight }));
      const fromDom = el ? [...el.querySelectorAll("img")].filter((img) => img.src.includes("/view?"))
        .map((img) => ({ src: img.src, w: img.naturalWidth, h: img.naturalHeight })) : [];
      return fromNode.length ? fromNode : fromDom;
    }, saveId);
    await page.waitForFunction((saveId) => {
      const n = window.app.graph.getNodeById(saveId) ?? window.app.graph.getNodeById(Number(saveId));
      const el = window.__amdm.nodeEl(saveId);
      const imgs = (n?.imgs && n.imgs.length ? n.imgs : el ? [...el.querySelectorAll("img")].filter((i) => i.src.includes("/view?")) : []);
      return imgs.length > 0 && imgs[0].complete && imgs[0].naturalWidth > 0;
    }, q.saveNode, { timeout: 20000 }).catch(() => {});
    await page.waitForTimeout(500);
    const result = await page.evaluate(({ samplerId }) => {
      const app = window.app;
      const sampler = app.graph.getNodeById(samplerId) ?? app.graph.getNodeById(Number(samplerId));
      const w = sampler.widgets.find((x) => x.name === "amdm_run_summary");
      const serialized = app.graph.serialize().nodes.find((n) => String(n.id) === String(samplerId));
      return {
        widget: w ? { serialize: w.serialize !== false, toPrompt: w.options?.serialize !== false, type: w.type } : null,
        samplerWidgetsValues: serialized.widgets_values,
        dialogs: window.__amdm.dialogs(),
        events: window.__amdmEvents.map((e) => e.type),
        promptId: window.__amdmEvents.find((e) => e.type === "execution_success")?.detail?.prompt_id ?? null,
      };
    }, { samplerId: q.samplerNode });
    Object.assign(result, { before, runButton: pressed, after: await summaryState(q.samplerNode), saveImages: await imagesOf(q.saveNode) });
    result.summary = result.after.value;
    if (q.screenshot) {
      // (the run's notifications would cover the top right of the picture)
      await page.addStyleTag({ content: ".p-toast { visibility: hidden !important; }" });
      await fitView(page);
      await page.screenshot({ path: q.screenshot, clip: await graphClip(page) });
    }
    mark("run_done");

    // A failing run: the old summary must go.
    if (q.failWidgets) {
      await page.evaluate(() => { window.__amdmEvents = []; });
      await setWidgets(q.failWidgets);
      const pressedAgain = await pressRun();
      if (!pressedAgain) await page.evaluate(() => window.app.queuePrompt(0, 1));
      await page.waitForFunction(() => window.__amdmEvents.some((e) => ["execution_error", "execution_success"].includes(e.type)),
                                 null, { timeout: q.timeoutMs ?? timeout });
      await page.waitForFunction(() => document.querySelector("textarea.amdm-run-summary")?.value === "", null, { timeout: 10000 }).catch(() => {});
      const events = await page.evaluate(() => window.__amdmEvents.map((e) => ({
        type: e.type, prompt_id: e.detail?.prompt_id ?? null, node_type: e.detail?.node_type ?? null,
        message: String(e.detail?.exception_message ?? "").slice(0, 300) })));
      result.failed = { runButton: pressedAgain, events, ...(await summaryState(q.samplerNode)) };
      mark("failed_run_done");
    }
    report.queue = result;
  }

  // Last (its dialog is not closed again: frontend 1.32's ignores Escape): the templates browser,
  // on the pack's own category, and the titles it shows for our templates.
  if (config.templates) {
    const opened = await page.evaluate(async () => {
      try { await window.app.extensionManager.command.execute("Comfy.BrowseTemplates"); return true; } catch (e) { return String(e); }
    });
    await page.waitForFunction(() => window.__amdm.dialogs().length > 0, null, { timeout: 15000 }).catch(() => {});
    // the pack's category in the dialog's navigation (the frontends name it by the pack's folder)
    report.templatesCategory = await page.waitForFunction((module) => {
      const leaves = [...document.querySelectorAll(".p-dialog *, [role='dialog'] *")]
        .filter((e) => e.children.length === 0 && e.textContent.trim() === module && e.getClientRects().length > 0);
      if (!leaves.length) return false;
      leaves[0].click();
      return true;
    }, config.templates.module, { timeout: 15000 }).then(() => true).catch(() => false);
    // the cards come in after their thumbnails are asked for
    await page.waitForFunction((titles) => {
      const text = window.__amdm.dialogs(100000).join("\n");
      return titles.every((t) => text.includes(t));
    }, config.templates.titles, { timeout: 15000 }).catch(() => {});
    const text = await page.evaluate(() => window.__amdm.dialogs(100000).join("\n"));
    report.templates = { opened, titles: config.templates.titles.filter((t) => text.includes(t)), dialogs: text.length > 0 };
    mark("templates_browsed");
  }
} catch (e) {
  report.error = String(e && e.stack || e).slice(0, 3000);
} finally {
  await context.close();
  process.stdout.write("AMDM_REPORT " + JSON.stringify(report) + "\n");
}
