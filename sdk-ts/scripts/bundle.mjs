// Bundles the SDK into one ES module for pages without a build step: demos/web/rso-client.js.
//   node scripts/bundle.mjs           writes the bundle
//   node scripts/bundle.mjs --check   rebuilds it into a temp file and fails if the committed one differs
import { build } from "esbuild";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const sdk = fileURLToPath(new URL("..", import.meta.url));
const target = join(sdk, "..", "demos", "web", "rso-client.js");
const banner = "// Generated from sdk-ts by `npm run bundle` (do not edit; `npm run check-bundle` fails when it is stale).";

async function bundle(outfile) {
  await build({
    absWorkingDir: sdk, // the paths in the bundle's comments are relative to it: the same on every machine
    entryPoints: ["src/index.ts"],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    minify: false,
    sourcemap: false,
    legalComments: "none",
    charset: "utf8",
    banner: { js: banner },
    logLevel: "warning",
  });
}

if (process.argv.includes("--check")) {
  const dir = mkdtempSync(join(tmpdir(), "rso-bundle-"));
  try {
    const fresh = join(dir, "rso-client.js");
    await bundle(fresh);
    let committed;
    try {
      committed = readFileSync(target, "utf8");
    } catch {
      committed = undefined;
    }
    if (committed !== readFileSync(fresh, "utf8")) {
      console.error("demos/web/rso-client.js is stale: run `npm run bundle` in sdk-ts");
      process.exitCode = 1;
    } else {
      console.log("demos/web/rso-client.js is up to date");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  mkdirSync(dirname(target), { recursive: true });
  await bundle(target);
  console.log(`wrote ${target}`);
}
