// A TCP proxy on 127.0.0.1 that a test can cut, to play a network that fails under a
// WebSocket: `cut()` destroys both sides of every connection at once (the client sees 1006,
// the server an end of stream, neither a close frame), `refuse` turns new connections away
// (accepted and destroyed at once, like a network that is still down), `hold()` keeps bytes
// in the proxy instead of forwarding them (data "in flight" that a cut then loses),
// `retarget()` sends new connections to another server (those open stay where they are), as a
// load balancer does once an instance drains.
//
//   const proxy = await startCutProxy({ port: server.port });
//   client.connect({ url: proxy.url, ... });
//   proxy.hold({ down: true }); ... proxy.cut(); proxy.refuse = true; ... proxy.refuse = false;
//   proxy.retarget({ port: other.port });
import net from 'node:net';

/**
 * @param {{port: number, host?: string,
 *          onDown?: (text: string, conn: {id: number}) => void}} o target address; onDown sees
 *   each chunk the server sends (latin1 text: server frames are unmasked, so their JSON is
 *   readable) once it was forwarded (or held), and may call hold() to keep what follows
 */
export function startCutProxy({ port, host = '127.0.0.1', onDown } = {}) {
  const target = { port, host };
  /** @type {Set<{id: number, client: net.Socket, upstream: net.Socket, heldUp: Buffer[], heldDown: Buffer[], cut: boolean}>} */
  const conns = new Set();
  const stats = { accepted: 0, refused: 0, cuts: 0 };
  let holdUp = false;
  let holdDown = false;
  let nextId = 0;

  const server = net.createServer({ noDelay: true }, (client) => {
    if (proxy.refuse) {
      stats.refused++;
      client.destroy();
      return;
    }
    stats.accepted++;
    const upstream = net.connect({ port: target.port, host: target.host, noDelay: true });
    const c = { id: ++nextId, client, upstream, heldUp: [], heldDown: [], cut: false };
    conns.add(c);
    client.on('data', (d) => {
      if (c.cut) return;
      if (holdUp) c.heldUp.push(d);
      else upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (c.cut) return;
      if (holdDown) c.heldDown.push(d);
      else client.write(d);
      onDown?.(d.toString('latin1'), c);
    });
    // An orderly end on one side ends the other (after what was written is flushed); an
    // error tears both down.
    const pair = [[client, upstream], [upstream, client]];
    for (const [a, b] of pair) {
      a.on('end', () => !c.cut && b.end());
      a.on('error', () => b.destroy());
      a.on('close', () => {
        conns.delete(c);
        if (!b.destroyed) b.end();
      });
    }
  });

  const proxy = {
    /** true: new connections are accepted and destroyed at once (counted in stats.refused) */
    refuse: false,
    stats,
    port: 0,
    url: '',
    /** Where new connections go. */
    get target() {
      return { ...target };
    },
    /**
     * Sends connections accepted from now on to `port` (and `host`, default unchanged); open
     * connections stay with the server they reached.
     * @param {{port: number, host?: string}} to
     */
    retarget({ port: p, host: h = target.host }) {
      target.port = p;
      target.host = h;
    },
    /** Connections open now. */
    get open() {
      return conns.size;
    },
    /** Bytes held (not forwarded) so far, per direction, as latin1 text. */
    held() {
      const text = (k) => [...conns].map((c) => Buffer.concat(c[k]).toString('latin1')).join('');
      return { up: text('heldUp'), down: text('heldDown') };
    },
    /** Keeps bytes in the proxy from now on: up = client to server, down = server to client. */
    hold({ up = false, down = false } = {}) {
      holdUp = holdUp || up;
      holdDown = holdDown || down;
    },
    /** Forwards what was held and stops holding. */
    release() {
      holdUp = holdDown = false;
      for (const c of conns) {
        for (const d of c.heldUp.splice(0)) c.upstream.write(d);
        for (const d of c.heldDown.splice(0)) c.client.write(d);
      }
    },
    /**
     * Destroys both sides of every open connection, without a close frame: what was held is
     * lost. Holding stops (new connections forward normally). Returns how many were cut.
     */
    cut() {
      holdUp = holdDown = false;
      let n = 0;
      for (const c of [...conns]) {
        c.cut = true;
        c.heldUp.length = c.heldDown.length = 0;
        c.client.destroy();
        c.upstream.destroy();
        conns.delete(c);
        n++;
      }
      stats.cuts += n;
      return n;
    },
    /** Cuts everything and stops listening. */
    close() {
      proxy.refuse = true;
      proxy.cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      proxy.port = /** @type {net.AddressInfo} */ (server.address()).port;
      proxy.url = `ws://127.0.0.1:${proxy.port}`;
      resolve(proxy);
    });
  });
}
