// A tiny static file server for the demo (signal-server itself serves no pages).
//   node tests/e2e/static-server.mjs [--root DIR] [--port N] [--host H]
// serves DIR (default: the repository root) and prints its URL; open
// http://127.0.0.1:PORT/clients/demo/ in two tabs.
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Serves `root` on host:port (port 0: the OS picks). Resolves to {url, port, close()}.
 * @param {{root?: string, host?: string, port?: number}} [o]
 */
export function startStaticServer({ root = repoRoot, host = '127.0.0.1', port = 0 } = {}) {
  const base = path.resolve(root);
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    let file = path.resolve(base, `.${urlPath}`);
    if (file !== base && !file.startsWith(base + path.sep)) {
      res.writeHead(403).end('forbidden');
      return;
    }
    try {
      if (statSync(file).isDirectory()) file = path.join(file, 'index.html');
      statSync(file);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const actual = server.address().port;
      resolve({
        port: actual,
        url: `http://${host}:${actual}`,
        close: () => new Promise((r) => server.close(r)),
      });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : dflt;
  };
  const s = await startStaticServer({
    root: arg('root', repoRoot),
    host: arg('host', '127.0.0.1'),
    port: Number(arg('port', '8080')),
  });
  console.log(`serving ${arg('root', repoRoot)} at ${s.url}/  (demo: ${s.url}/clients/demo/)`);
}
