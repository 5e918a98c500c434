// Two headless Chromium pages (two browser contexts) run the demo in one room through
// signal-server: the RTCPeerConnection reaches `connected`, DataChannel messages go both
// ways and each page decodes the other's canvas video.
//
//   E2E_MODE=embedded  one server, embedded bus
//   E2E_MODE=redis     two servers on one redis-server, one page on each
//   E2E_RUNS=10        repeat the call 10 times (fresh contexts, fresh room) and print the
//                      median time from both-joined to connected
//
// Environment: SIGNAL_SERVER_BIN (required), REDIS_SERVER_BIN (default redis-server),
// CHROMIUM_BIN (default /usr/bin/chromium), E2E_ARTIFACTS (screenshots on failure; default
// a temporary directory), E2E_SCREENSHOTS=1 (screenshots on success too), E2E_NODE_MODULES
// (see harness.mjs).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { demoState, launchChromium, openDemo, saveScreenshots } from './browser-lib.mjs';
import { median, startRedis, startServer, stopAll, waitFor } from './harness.mjs';
import { startStaticServer } from './static-server.mjs';

const mode = process.env.E2E_MODE ?? 'embedded';
const runs = Math.max(1, Number(process.env.E2E_RUNS ?? '1'));
const bin = process.env.SIGNAL_SERVER_BIN;

async function oneCall(browser, demoBase, servers, run) {
  const urls = [servers[0].url, servers.at(-1).url];
  const room = `e2e-${mode}-${process.pid}-${run}`;
  const opened = [];
  try {
    const a = await openDemo(browser, demoBase, { server: urls[0], room, name: 'page-a' });
    opened.push(a);
    await waitFor(async () => (await demoState(a.page)).signaling === 'open', {
      timeoutMs: 15000,
      what: 'page A to join',
    });
    const b = await openDemo(browser, demoBase, { server: urls[1], room, name: 'page-b' });
    opened.push(b);
    const done = (s) =>
      s.pcState === 'connected' && s.rtts.length > 0 && s.received.length > 0 && s.frames > 0;
    const [sa, sb] = await waitFor(
      async () => {
        const states = [await demoState(a.page), await demoState(b.page)];
        return states.every(done) ? states : null;
      },
      { timeoutMs: 45000, intervalMs: 50, what: 'connected, DataChannel both ways, video frames on both pages' },
    );
    assert.equal(sa.role, 'offerer');
    assert.equal(sb.role, 'answerer');
    assert.ok(sa.received.some((m) => m.from === 'answerer'), 'A got a DataChannel message from B');
    assert.ok(sb.received.some((m) => m.from === 'offerer'), 'B got a DataChannel message from A');
    assert.deepEqual([...sa.errors, ...sb.errors], []);
    if (servers.length > 1) {
      // one page per instance: the call crossed Redis
      for (const s of servers) assert.match(s.output, new RegExp(`"roomId":"${room}","localCount":1`));
    }
    if (process.env.E2E_SCREENSHOTS === '1') await saveScreenshots([a.page, b.page], `${mode}-run${run}-ok`);
    const joined = Math.min(sa.bothJoinedAt, sb.bothJoinedAt);
    const connected = Math.max(sa.connectedAt, sb.connectedAt);
    const setupMs = connected - joined;
    console.log(
      `# run ${run}: both-joined -> connected ${setupMs.toFixed(1)} ms; ` +
        `DataChannel RTT ${sa.rtts.at(-1).toFixed(2)} ms; frames A ${sa.frames}, B ${sb.frames}`,
    );
    return setupMs;
  } catch (err) {
    const pages = opened.map((o) => o.page);
    await saveScreenshots(pages, `${mode}-run${run}`);
    for (const p of pages) {
      try {
        console.log(`# ${p.label} state: ${JSON.stringify(await demoState(p))}`);
      } catch {}
      for (const line of p.consoleLines) console.log(`# ${line}`);
    }
    throw err;
  } finally {
    for (const o of opened) await o.context.close().catch(() => {});
  }
}

after(stopAll);

test(`two Chromium pages call each other through signal-server (${mode} bus)`, {
  skip: bin ? false : 'SIGNAL_SERVER_BIN not set',
}, async (t) => {
  let servers;
  if (mode === 'redis') {
    const redis = await startRedis({ bin: process.env.REDIS_SERVER_BIN ?? 'redis-server' });
    t.after(() => redis.stop());
    const env = { REDIS_URL: redis.url };
    servers = [
      await startServer({ bin, env, name: 'server-1' }),
      await startServer({ bin, env, name: 'server-2' }),
    ];
  } else if (mode === 'embedded') {
    servers = [await startServer({ bin })];
  } else {
    throw new Error(`E2E_MODE must be embedded or redis, not ${mode}`);
  }
  t.after(() => Promise.all(servers.map((s) => s.stop())));

  const web = await startStaticServer();
  t.after(() => web.close());
  const browser = await launchChromium();
  t.after(() => browser.close());

  const times = [];
  try {
    for (let run = 1; run <= runs; run++) times.push(await oneCall(browser, web.url, servers, run));
  } catch (err) {
    for (const s of servers) console.log(`# ${s.name} output:\n${s.output.replace(/^/gm, '#   ')}`);
    throw err;
  }
  const sorted = [...times].sort((x, y) => x - y);
  console.log(
    `# both-joined -> connected (${mode}): median ${median(times).toFixed(1)} ms over ${times.length} ` +
      `run(s); min ${sorted[0].toFixed(1)}, max ${sorted.at(-1).toFixed(1)}`,
  );
});
