// The host page's own server for the Lighthouse script: serves the files of
// one directory on its own origin (not feedd's), nothing else.
//   node serve.mjs PORT DIR
import { createServer } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join, normalize } from 'node:path'

const [port, dir] = process.argv.slice(2)
const types = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8' }

createServer(async (req, res) => {
  const path = normalize(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '')
  const ext = path.slice(path.lastIndexOf('.'))
  try {
    const body = await readFile(join(dir, path))
    res.writeHead(200, { 'Content-Type': types[ext] || 'application/octet-stream', 'Cache-Control': 'no-cache' })
    res.end(body)
  } catch {
    res.writeHead(404).end()
  }
}).listen(+port, 'localhost')
