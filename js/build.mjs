// Builds python/sente/static/sente.js: src/sente.js and its codec libraries (edn-data, transit-js) bundled
// into one dependency-free ES module, so the Python package serves it with no Node at run time; and
// python/sente/static/LICENSES.txt with the licence texts of everything bundled. Reproducible: pinned
// versions (package-lock.json), no minification, no timestamps. Run: `cd js && npm ci && npm run build`.

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "python", "sente", "static");
const bundled = ["edn-data", "transit-js"];

const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
const versions = bundled.map((name) => `${name}@${JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8")).version}`);

await build({
  entryPoints: [join(here, "src", "sente.js")],
  bundle: true,
  format: "esm",
  platform: "neutral",
  mainFields: ["module", "main"],
  target: "es2020",
  minify: true,
  keepNames: true,
  legalComments: "none",
  charset: "utf8",
  outfile: join(out, "sente.js"),
  banner: {
    js: `// sente.js ${pkg.version}: Sente's client for the browser, served by csente at /sente.js.\n` +
      `// Built by js/build.mjs from js/src (do not edit); bundles ${versions.join(", ")} (licences: LICENSES.txt).`,
  },
});

const licenceFile = (name) => ["LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"]
  .map((f) => join(here, "node_modules", name, f))
  .find((f) => { try { readFileSync(f); return true; } catch { return false; } });

let text = "Third-party code bundled into sente.js, with its licence.\n";
for (const [i, name] of bundled.entries()) {
  const file = licenceFile(name);
  if (!file) throw new Error(`no licence file in node_modules/${name}`);
  text += `\n${"=".repeat(78)}\n${versions[i]} (https://www.npmjs.com/package/${name})\n${"=".repeat(78)}\n\n`;
  text += readFileSync(file, "utf8").trimEnd() + "\n";
}
writeFileSync(join(out, "LICENSES.txt"), text);
console.log(`wrote ${join(out, "sente.js")} and LICENSES.txt (${versions.join(", ")})`);
