// Drives the real ComfyUI frontend in Debian's Chromium through playwright-core, for
// tests/browser/test_browser.py. Usage: node drive.mjs CONFIG.json; prints one JSON report line
// (prefixed "AMDM_REPORT ") on stdout. Config:
//   { "url", "chromium", "playwright", "userDataDir", "screenshotDir", "timeoutMs",
//     "workflows": [{"name", "path"}],            // UI-format files, each dropped onto the page
//     "queue": {"name", "widgets": {"<node id>": {"<widget>": value}}, "screenshot"} }
// Per workflow it reports what the frontend made of the file: missing node types (from the
// frontend's own afterConfigureGraph hook), open dialogs, every node's type/title/widgets, the
// re-serialised widgets_values and the frontend's own API prompt (graphToPrompt). For "queue" it
// clicks the Run button, waits for the run summary on the Multi-Model Sampler and screenshots it.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const require = createRequire(import.meta.url);
const { chromium } = require(config.playwright);
const timeout = config.timeoutMs ?? 60000;
const report = { console: [], pageErrors: [], workflows: {}, queue: null, timings: {} };
const t0 = Date.now();
const mark = (k) => { report.timings[k] = (Date.now() - t0) / 1000; };

// Frame the whole graph in the part of the window that no toolbar or panel covers (the
// LiteGraph transform: screen = (graph + offset) * scale).
async function fitView(page) {
  await page.evaluate(() => {
    const canvas = window.app.canvas;
    const box = canvas.canvas.getBoundingClientRect();
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of window.app.graph.nodes) {
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const left = 90 - box.left, top = 150 - box.top;
    const w = window.innerWidth - 110, h = window.innerHeight - 170;
    const scale = Math.min(w / (x1 - x0), h / (y1 - y0), 1.2);
    canvas.ds.scale = scale;
    canvas.ds.offset = [left / scale - x0, top / scale - y0];
    canvas.setDirty(true, true);
  });
  await page.waitForTimeout(400);
}

// The screen rectangle of the graph's nodes (titles included), for a tight screenshot.
async function graphClip(page) {
  const r = await page.evaluate(() => {
    const canvas = window.app.canvas;
    const el = canvas.canvas;
    const box = el.getBoundingClientRect();
    const dpr = el.width / box.width || 1;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of window.app.graph.nodes) {
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const p0 = canvas.ds.convertOffsetToCanvas([x0, y0]);
    const p1 = canvas.ds.convertOffsetToCanvas([x1, y1]);
    return { x: box.left + p0[0] / dpr, y: box.top + p0[1] / dpr, w: (p1[0] - p0[0]) / dpr, h: (p1[1] - p0[1]) / dpr,
             vw: window.innerWidth, vh: window.innerHeight };
  });
  const m = 16;
  const x = Math.max(0, r.x - m), y = Math.max(0, r.y - m);
  return { x, y, width: Math.min(r.vw - x, r.w + 2 * m), height: Math.min(r.vh - y, r.h + 2 * m) };
}

const context = await chromium.launchPersistentContext(config.userDataDir, {
  executablePath: config.chromium,
  headless: true,
  viewport: { width: 1600, height: 1000 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) report.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)); });
  page.on("pageerror", (e) => report.pageErrors.push(String(e).slice(0, 500)));

  // a first-visit announcement banner would cover the top of the canvas in screenshots
  await page.addInitScript(() => { try { localStorage.setItem("vueNodesBannerDismissed", "true"); } catch (e) {} });
  await page.goto(config.url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas && window.LiteGraph?.registered_node_types?.AMDM_MultiModelSampler,
                             null, { timeout });
  mark("app_ready");
  // Record what the frontend itself reports as missing after each load (its afterConfigureGraph
  // hook receives the list it would show in the missing-nodes dialog).
  await page.evaluate(() => {
    window.__amdmMissing = [];
    window.app.registerExtension({
      name: "amdm.test.MissingNodeProbe",
      afterConfigureGraph(missing) { window.__amdmMissing.push((missing || []).map((m) => (typeof m === "string" ? m : m.type))); },
    });
  });
  report.extensions = await page.evaluate(() => window.app.extensions.map((e) => e.name).filter((n) => n.startsWith("amdm")));
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
    await page.waitForTimeout(300);
  };

  for (const wf of config.workflows) {
    await dropWorkflow(wf);
    const info = await page.evaluate(async () => {
      const app = window.app;
      const nodes = app.graph.nodes.map((n) => ({
        id: n.id, type: n.type, title: n.title, comfyClass: n.comfyClass ?? null, pos: [...n.pos],
        registered: n.type in window.LiteGraph.registered_node_types,
        hasErrors: !!n.has_errors,
        size: [...n.size],
        inputs: (n.inputs || []).map((i) => ({ name: i.name, label: i.label ?? i.localized_name ?? null, type: i.type, link: i.link ?? null, widget: i.widget?.name ?? null })),
        widgets: (n.widgets || []).map((w) => ({ name: w.name, type: w.type, value: typeof w.value === "object" ? null : w.value,
                                                  serialize: w.serialize !== false, toPrompt: w.options?.serialize !== false })),
      }));
      const serialized = app.graph.serialize();
      const prompt = await app.graphToPrompt();
      const dialogs = [...document.querySelectorAll(".p-dialog")].filter((d) => d.offsetParent !== null).map((d) => d.innerText.slice(0, 300));
      return { nodes, widgets_values: Object.fromEntries(serialized.nodes.map((n) => [n.id, n.widgets_values ?? null])),
               prompt: prompt.output, missing: window.__amdmMissing.flat(), dialogs };
    });
    report.workflows[wf.name] = info;
    if (config.screenshotDir) {
      await fitView(page);
      await page.screenshot({ path: path.join(config.screenshotDir, `${wf.name}.png`), clip: await graphClip(page) });
    }
  }
  mark("workflows_loaded");

  if (config.queue) {
    const q = config.queue;
    await dropWorkflow(config.workflows.find((w) => w.name === q.name));
    await page.evaluate((widgets) => {
      for (const [id, values] of Object.entries(widgets || {})) {
        const node = window.app.graph.getNodeById(Number(id));
        for (const [name, value] of Object.entries(values)) {
          const w = node.widgets.find((x) => x.name === name);
          w.value = value;
          w.callback?.(value);
        }
      }
      window.app.graph.setDirtyCanvas(true, true);
    }, q.widgets);
    // the summary box appears (and fills) only after the server reports the sampler's output
    const summaryBefore = await page.evaluate(() => document.querySelectorAll("textarea.amdm-run-summary").length);
    const button = page.locator('[data-testid="queue-button"] button').first();
    let clicked = false;
    if (await button.count()) {
      await button.click();
      clicked = true;
    } else {
      await page.evaluate(() => window.app.queuePrompt(0, 1));
    }
    mark("queued");
    await page.waitForFunction(() => {
      const ta = document.querySelector("textarea.amdm-run-summary");
      return ta && ta.value && ta.value.includes("evaluations");
    }, null, { timeout: q.timeoutMs ?? timeout });
    mark("summary_shown");
    // the SaveImage node shows the saved image once the frontend has fetched it
    await page.waitForFunction((saveId) => {
      const n = window.app.graph.getNodeById(saveId);
      return n && n.imgs && n.imgs.length > 0 && n.imgs[0].complete && n.imgs[0].naturalWidth > 0;
    }, q.saveNode, { timeout: 20000 }).catch(() => {});
    await page.waitForTimeout(500);
    const result = await page.evaluate(({ samplerId, saveId }) => {
      const app = window.app;
      const sampler = app.graph.getNodeById(samplerId);
      const save = app.graph.getNodeById(saveId);
      const w = sampler.widgets.find((x) => x.name === "amdm_run_summary");
      const serialized = app.graph.serialize().nodes.find((n) => n.id === samplerId);
      return {
        summary: document.querySelector("textarea.amdm-run-summary")?.value ?? null,
        widget: w ? { serialize: w.serialize !== false, toPrompt: w.options?.serialize !== false, type: w.type } : null,
        samplerWidgetsValues: serialized.widgets_values,
        saveImages: (save?.imgs || []).map((img) => ({ src: img.src, w: img.naturalWidth, h: img.naturalHeight })),
        dialogs: [...document.querySelectorAll(".p-dialog")].filter((d) => d.offsetParent !== null).map((d) => d.innerText.slice(0, 300)),
      };
    }, { samplerId: q.samplerNode, saveId: q.saveNode });
    result.clicked = clicked;
    result.summaryBoxesBefore = summaryBefore;
    if (q.screenshot) {
      await fitView(page);
      const clip = await graphClip(page);
      await page.screenshot({ path: q.screenshot, clip });
    }
    report.queue = result;
    mark("done");
  }
} catch (e) {
  report.error = String(e && e.stack || e).slice(0, 3000);
} finally {
  await context.close();
  process.stdout.write("AMDM_REPORT " + JSON.stringify(report) + "\n");
}
