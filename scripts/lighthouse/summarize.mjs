// Reads the Lighthouse reports of run.sh and prints the medians per build
// and preset as a Markdown table; exits 1 when a build other than the
// baseline misses a target (CLS <= 0.01, performance >= 0.98, accessibility 1).
//   node summarize.mjs DIR   (DIR holds <build>-<preset>-<run>.json)
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2]
const groups = {}
for (const f of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
  const [build, preset] = f.split('-')
  const r = JSON.parse(readFileSync(join(dir, f), 'utf8'))
  const a = r.audits
  ;(groups[`${build} ${preset}`] ||= []).push({
    cls: a['cumulative-layout-shift'].numericValue,
    perf: r.categories.performance.score,
    a11y: r.categories.accessibility.score,
    fcp: a['first-contentful-paint'].numericValue,
    lcp: a['largest-contentful-paint'].numericValue,
    tbt: a['total-blocking-time'].numericValue,
    lh: r.lighthouseVersion,
    chrome: r.environment.hostUserAgent.match(/Chrom[a-z]*\/[\d.]+/)?.[0],
  })
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
let failed = false
let env = ''
console.log('| build | preset | runs | CLS | performance | accessibility | FCP ms | LCP ms | TBT ms |')
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
for (const [k, rs] of Object.entries(groups)) {
  const [build, preset] = k.split(' ')
  const m = (f) => median(rs.map(f))
  const cls = m((r) => r.cls), perf = m((r) => r.perf), a11y = m((r) => r.a11y)
  // The median, and the range when the runs differ.
  const show = (f, d) => {
    const xs = rs.map(f), lo = Math.min(...xs).toFixed(d), hi = Math.max(...xs).toFixed(d)
    return median(xs).toFixed(d) + (lo == hi ? '' : ` (${lo}–${hi})`)
  }
  console.log(`| ${build} | ${preset} | ${rs.length} | ${show((r) => r.cls, 3)} | ${show((r) => r.perf, 2)} | ${show((r) => r.a11y, 2)} | ${m((r) => r.fcp).toFixed(0)} | ${m((r) => r.lcp).toFixed(0)} | ${m((r) => r.tbt).toFixed(0)} |`)
  env = `Lighthouse ${rs[0].lh}, ${rs[0].chrome}`
  if (build != 'baseline' && (cls > 0.01 || perf < 0.98 || a11y < 1)) failed = true
}
console.log(`\n${env}; medians of each build's runs (range in brackets).`)
if (failed) {
  console.error('the current build misses a target: CLS <= 0.01, performance >= 0.98, accessibility 1')
  process.exit(1)
}
