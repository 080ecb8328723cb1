// The browser tests' harness: builds the rso binary from this repository, runs it on a free loopback port
// with a temporary data folder (and restarts it on the same port and data), and drives Debian's Chromium
// through playwright-core. Nothing is downloaded: the browser is /usr/bin/chromium.
import { execFile, spawn } from "node:child_process";
import { access, copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

export const e2eDir = import.meta.dirname;
export const repoRoot = path.resolve(e2eDir, "..");
export const artifactsDir = path.join(e2eDir, "artifacts");
const screenshotsDir = path.join(repoRoot, "docs", "screenshots");

/** How long one condition may take; generous for a loaded 2-core machine, still short of a hang. */
export const WAIT = 20_000;

const chromiumPath = process.env.RSO_CHROMIUM || "/usr/bin/chromium";
const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** Builds ./cmd/rso into dir (or uses RSO_BIN, a binary built already). */
async function buildRso(dir) {
  if (process.env.RSO_BIN) return process.env.RSO_BIN;
  const bin = path.join(dir, "rso");
  try {
    await promisify(execFile)("go", ["build", "-o", bin, "./cmd/rso"], { cwd: repoRoot, maxBuffer: 16 << 20 });
  } catch (err) {
    throw new Error(`go build ./cmd/rso failed:\n${err.stderr || err.message}`);
  }
  return bin;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One rso process on 127.0.0.1:port with its data folder; start, stop and restart keep both. */
export class RsoServer {
  constructor(bin, port, dataDir, env = {}) {
    this.bin = bin;
    this.port = port;
    this.dataDir = dataDir;
    this.env = env;
    this.proc = undefined;
    this.output = "";
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  url(p) {
    return `${this.base}/demos/${p}`;
  }

  async start() {
    const proc = spawn(this.bin, ["-addr", `127.0.0.1:${this.port}`, "-data", this.dataDir], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RSO_TOKEN_SECRET: "", RSO_NATS: "", RSO_DEMOS: "", ...this.env },
    });
    this.proc = proc;
    const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
    proc.exited = exited;
    const keep = (chunk) => {
      this.output += chunk;
      if (this.output.length > 200_000) this.output = this.output.slice(-100_000);
    };
    proc.stdout.on("data", keep);
    proc.stderr.on("data", keep);

    const deadline = Date.now() + WAIT;
    for (;;) {
      const early = await Promise.race([exited, delay(100).then(() => undefined)]);
      if (early) throw new Error(`rso exited (${early.code ?? early.signal}) while starting:\n${this.output}`);
      try {
        const res = await fetch(`${this.base}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`rso did not become healthy in ${WAIT} ms:\n${this.output}`);
    }
  }

  /** SIGTERM, as an operator would: clients are closed with 1012 and reconnect. */
  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const done = await Promise.race([proc.exited, delay(WAIT).then(() => undefined)]);
    if (!done) {
      proc.kill("SIGKILL");
      await proc.exited;
      throw new Error(`rso did not stop within ${WAIT} ms of SIGTERM:\n${this.output}`);
    }
    if (done.code !== 0) throw new Error(`rso exited with ${done.code ?? done.signal} after SIGTERM:\n${this.output}`);
  }

  async restart() {
    await this.stop();
    await this.start();
  }
}

/**
 * Everything one test file needs: a fresh rso (own port, own data) and a browser. Call close() in after().
 * Pages opened through it record uncaught errors; assertNoPageErrors() fails on them. env adds to the
 * server's environment (RSO_TOKEN_SECRET, …).
 */
export async function setup({ env = {} } = {}) {
  if (!process.env.RSO_BIN) {
    await access(path.join(repoRoot, "demos", "web", "rso-client.js")).catch(() => {
      throw new Error("demos/web/rso-client.js is missing: build the SDK bundle first (cd sdk-ts && npm ci && npm run bundle)");
    });
  }
  const tmp = await mkdtemp(path.join(os.tmpdir(), "rso-e2e-"));
  const bin = await buildRso(tmp);
  const server = new RsoServer(bin, await freePort(), path.join(tmp, "data"), env);
  await server.start();
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  const errors = [];
  const contexts = [];

  return {
    server,
    browser,
    errors,

    /** A new browser context (its own storage, like another person) with one page at url. */
    async open(url, { viewport = { width: 1280, height: 800 }, ignore = [] } = {}) {
      const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
      contexts.push(context);
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT);
      const ignored = (text) => ignore.some((re) => re.test(text));
      page.on("pageerror", (err) => errors.push(`${url}: ${err.message}`));
      page.on("console", (msg) => {
        if (msg.type() === "error" && !ignored(msg.text())) errors.push(`${url}: console: ${msg.text()}`);
      });
      await page.goto(server.url(url));
      return page;
    },

    assertNoPageErrors() {
      if (errors.length > 0) throw new Error(`errors in the pages:\n${errors.join("\n")}`);
    },

    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close().catch(() => {});
      await server.stop().catch(() => {});
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/** Waits until fn(arg) is truthy in the page; the error names what was awaited. */
export async function until(page, what, fn, arg) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
  } catch (err) {
    throw new Error(`timed out waiting for ${what}: ${err.message.split("\n")[0]}`);
  }
}

/** Waits until a demo page has joined, connected and loaded its objects (it sets body[data-ready]). */
export async function ready(page) {
  await until(page, "the page ready", () => document.body.dataset.ready === "true");
}

/**
 * Saves a screenshot to e2e/artifacts/<name>.png. With docs, and RSO_UPDATE_SCREENSHOTS=1 (npm run
 * screenshots), also to docs/screenshots/<name>.png, the copies the README shows; a plain test run leaves
 * the committed pictures alone.
 */
export async function screenshot(page, name, { docs = false } = {}) {
  await mkdir(artifactsDir, { recursive: true });
  const file = path.join(artifactsDir, `${name}.png`);
  await page.screenshot({ path: file, animations: "disabled" });
  if (docs && process.env.RSO_UPDATE_SCREENSHOTS === "1") {
    await mkdir(screenshotsDir, { recursive: true });
    await copyFile(file, path.join(screenshotsDir, `${name}.png`));
  }
  return file;
}

/** Resolves after ms without keeping the process alive (a pending race must not delay the test run's end). */
function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
