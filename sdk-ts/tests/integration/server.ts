// Builds the real rso binary once per test process and runs it on a free port with a temp data folder.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The Go module root: sdk-ts/.. (tests run from sdk-ts/build/tests/integration). */
const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));

let built: Promise<string> | undefined;

/** The rso binary: $RSO_BIN if set, else built once from this checkout into a temp folder. */
export function rsoBinary(): Promise<string> {
  built ??= process.env["RSO_BIN"] !== undefined ? Promise.resolve(process.env["RSO_BIN"]) : build();
  return built;
}

async function build(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "rso-sdk-bin-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, "rso");
  await run("go", ["build", "-o", bin, "./cmd/rso"], repoRoot);
  return bin;
}

function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ["ignore", "inherit", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("error", (err) => reject(new Error(`cannot run ${cmd} (is Go installed? or set RSO_BIN): ${err.message}`)));
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} failed (${code}):\n${stderr}`))));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr !== null ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Polls `cond` until it holds; fails with `what` after `timeoutMs`. Not a sleep: it returns as soon as it can. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface ServerOptions {
  tokenSecret?: string;
  /** More flags, e.g. ["-presence-grace", "300ms"]. */
  args?: string[];
}

/** One rso process; restart() starts it again on the same port and data folder. */
export class RsoServer {
  readonly port: number;
  readonly dataDir: string;
  readonly #bin: string;
  readonly #options: ServerOptions;
  #proc: ChildProcess | undefined;
  #log = "";

  private constructor(bin: string, port: number, options: ServerOptions) {
    this.#bin = bin;
    this.port = port;
    this.#options = options;
    this.dataDir = mkdtempSync(join(tmpdir(), "rso-sdk-data-"));
  }

  static async start(options: ServerOptions = {}): Promise<RsoServer> {
    const server = new RsoServer(await rsoBinary(), await freePort(), options);
    await server.restart();
    return server;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Starts the process (again) and waits for /healthz. */
  async restart(): Promise<void> {
    if (this.#proc !== undefined) throw new Error("rso is already running");
    // Only our flags: RSO_* variables of the environment would change the server.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RSO_")));
    if (this.#options.tokenSecret !== undefined) env["RSO_TOKEN_SECRET"] = this.#options.tokenSecret;
    const proc = spawn(this.#bin, ["-addr", `127.0.0.1:${this.port}`, "-data", this.dataDir, ...(this.#options.args ?? [])], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.#proc = proc;
    let exited = false;
    proc.on("exit", () => (exited = true));
    const keep = (b: Buffer) => (this.#log = (this.#log + b.toString()).slice(-20_000));
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    await waitFor(`rso on port ${this.port} to answer /healthz`, async () => {
      if (exited) throw new Error(`rso exited during start:\n${this.#log}`);
      try {
        return (await fetch(`http://127.0.0.1:${this.port}/healthz`)).status === 200;
      } catch {
        return false;
      }
    }, 30_000);
  }

  /** Stops the process with `signal` and waits for it to exit (SIGKILL after 20 s). */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = this.#proc;
    if (proc === undefined) return;
    this.#proc = undefined;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops the process and removes its data. */
  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  get log(): string {
    return this.#log;
  }
}
