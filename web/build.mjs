// Builds the viewer into ../src/distilface/web/static/ (git-ignored; `distilface view` serves it):
//   index.html, app.css         copied from src/
//   app.js                      src/main.js and its imports (three, onnxruntime-web) bundled by esbuild
//   ort/ort-wasm-simd-threaded.{mjs,wasm}   onnxruntime-web's WebAssembly runtime, loaded at run time
// Run from scripts/setup.sh after `npm ci`; `node build.mjs --check` only checks the output exists.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "distilface", "web", "static");
const ortDist = join(here, "node_modules", "onnxruntime-web", "dist");
const ORT_FILES = ["ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];  // the plain wasm backend
const PAGE_FILES = ["index.html", "app.css"];

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "ort"), { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.js")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  legalComments: "linked",
  // ort.wasm.min.mjs: the runtime's .mjs/.wasm stay separate files, fetched from env.wasm.wasmPaths
  conditions: ["onnxruntime-web-use-extern-wasm"],
  logLevel: "warning",
});
for (const f of ORT_FILES) copyFileSync(join(ortDist, f), join(out, "ort", f));
for (const f of PAGE_FILES) copyFileSync(join(here, "src", f), join(out, f));
const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
writeFileSync(join(out, "BUILD.json"), JSON.stringify({ name: pkg.name, version: pkg.version, dependencies: pkg.dependencies }, null, 1) + "\n");
for (const f of ["app.js", ...PAGE_FILES, ...ORT_FILES.map((f) => `ort/${f}`)]) {
  if (!existsSync(join(out, f))) throw new Error(`build: ${f} missing`);
}
console.log(`web: built ${out}`);
