// Writes the licenses of every npm package an esbuild bundle contains.
// Usage (from the package's directory): node bundle-licenses.mjs META_JSON OUT_TXT TITLE
import fs from "node:fs"
import path from "node:path"

const [metaFile, outFile, title] = process.argv.slice(2)
const meta = JSON.parse(fs.readFileSync(metaFile, "utf8"))
const packages = new Set()
for (const input of Object.keys(meta.inputs)) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//)
  if (match) packages.add(match[1])
}
let text = `${title} bundles these npm packages:\n`
for (const name of [...packages].sort()) {
  const dir = path.join("node_modules", name)
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
  const file = fs.readdirSync(dir).find((entry) => /^licen[cs]e/i.test(entry))
  text += `\n==== ${name} ${manifest.version} (${manifest.license})\n`
  text += file ? fs.readFileSync(path.join(dir, file), "utf8") : `license: ${manifest.license}; no license file in the package\n`
}
fs.writeFileSync(outFile, text)
