// A non-browser WebRTC peer (werift, pure JavaScript) that signals through signal-server
// with SignalingClient: the shape a native host takes. It speaks the demo page's protocol:
// whoever is in the room first offers when it hears `peer-joined`; the DataChannel carries
// {kind: 'ping'|'pong', t, from} JSON; video from the browser is counted in RTP packets.
//
//   node tests/e2e/werift-peer.mjs --url ws://127.0.0.1:3002 --room ROOM [--stun stun:HOST:PORT]
// (needs `npm ci` in tests/e2e for werift and ws). werift always asks a STUN server while
// gathering, Google's when none is given; without --stun this peer answers that itself
// (stun-responder.mjs), so nothing leaves the machine.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignalingClient } from '../../clients/js/signaling-client.js';
import { requireDep } from './harness.mjs';
import { startStunResponder } from './stun-responder.mjs';

/**
 * Joins `roomId` and answers (or makes) one call. Returns a handle whose `state` the caller
 * watches; `close()` ends the call and leaves the room.
 * @param {{url: string, roomId: string, iceServers: {urls: string}[],
 *          log?: (line: string) => void}} o
 */
export async function startWeriftPeer({ url, roomId, iceServers, log = () => {} }) {
  const { RTCPeerConnection } = requireDep('werift');
  const WebSocket = requireDep('ws');
  const state = {
    role: null,
    pcState: 'new',
    dcState: 'closed',
    received: [],
    rtts: [],
    rtpPackets: 0,
    offersSent: 0,
    offersReceived: 0,
    answersReceived: 0,
    errors: [],
  };
  const client = new SignalingClient({ WebSocket });
  let pc = null;
  let dc = null;
  let pingTimer = null;
  let pending = [];
  let chain = Promise.resolve();
  const step = (fn) => {
    chain = chain.then(fn).catch((err) => {
      state.errors.push(String(err?.stack ?? err));
      log(`error: ${err?.stack ?? err}`);
    });
  };

  function newPc(role) {
    pc?.close();
    state.role = role;
    pending = [];
    pc = new RTCPeerConnection({ iceServers, iceUseIpv6: false });
    pc.onicecandidate = ({ candidate }) => {
      if (candidate?.candidate) client.sendCandidate(candidate.toJSON());
    };
    pc.connectionStateChange.subscribe((s) => {
      state.pcState = s;
      log(`peer connection: ${s}`);
    });
    pc.onTrack.subscribe((track) => {
      log(`remote ${track.kind} track`);
      track.onReceiveRtp.subscribe(() => {
        state.rtpPackets++;
      });
    });
    pc.onDataChannel.subscribe((channel) => useChannel(channel));
  }

  function useChannel(channel) {
    dc = channel;
    const onOpen = () => {
      state.dcState = 'open';
      log('DataChannel open');
      ping();
      pingTimer = setInterval(ping, 1000);
    };
    if (channel.readyState === 'open') onOpen();
    else {
      channel.stateChanged.subscribe((s) => {
        if (s === 'open') onOpen();
        if (s === 'closed') {
          state.dcState = 'closed';
          clearInterval(pingTimer);
        }
      });
    }
    channel.onMessage.subscribe((data) => {
      const m = JSON.parse(data.toString());
      state.received.push(m);
      if (m.kind === 'ping') channel.send(JSON.stringify({ kind: 'pong', t: m.t, from: 'host' }));
      if (m.kind === 'pong') state.rtts.push(performance.now() - m.t);
    });
  }

  function ping() {
    if (dc?.readyState === 'open') dc.send(JSON.stringify({ kind: 'ping', t: performance.now(), from: 'host' }));
  }

  async function flushCandidates() {
    for (const c of pending.splice(0)) await pc.addIceCandidate(c);
  }

  client.on('peer-joined', () =>
    step(async () => {
      newPc('offerer');
      useChannel(pc.createDataChannel('demo'));
      await pc.setLocalDescription(await pc.createOffer());
      client.sendOffer(pc.localDescription.sdp);
      state.offersSent++;
      log('offer sent');
    }),
  );
  client.on('offer', ({ sdp }) => {
    state.offersReceived++;
    step(async () => {
      newPc('answerer');
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      client.sendAnswer(pc.localDescription.sdp);
      await flushCandidates();
      log('answer sent');
    });
  });
  client.on('answer', ({ sdp }) => {
    state.answersReceived++;
    step(async () => {
      await pc.setRemoteDescription({ type: 'answer', sdp });
      await flushCandidates();
    });
  });
  client.on('candidate', ({ candidate, sdpMid, sdpMLineIndex }) =>
    step(async () => {
      const init = { candidate, sdpMid: sdpMid ?? undefined, sdpMLineIndex: sdpMLineIndex ?? undefined };
      if (pc?.remoteDescription) await pc.addIceCandidate(init);
      else pending.push(init);
    }),
  );
  client.on('peer-disconnected', () =>
    step(async () => {
      clearInterval(pingTimer);
      await pc?.close();
      pc = null;
      state.pcState = 'closed';
      log('peer left');
    }),
  );
  client.on('peer-suspended', () => log('peer suspended (its signaling connection dropped)'));
  client.on('peer-resumed', () => log('peer resumed'));
  client.on('close', ({ code, reason, willReconnect }) =>
    log(`signaling closed ${code} ${reason}${willReconnect ? ' (reconnecting)' : ''}`),
  );

  await client.connect({ url, roomId, events: true });
  log(`joined ${roomId} as ${client.welcome?.clientId}`);
  return {
    state,
    client,
    async close() {
      clearInterval(pingTimer);
      client.close();
      await pc?.close();
    },
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const url = arg('url') ?? 'ws://127.0.0.1:3002';
  const roomId = arg('room');
  if (!roomId) {
    console.error('usage: werift-peer.mjs --url ws://HOST:PORT --room ROOM');
    process.exit(2);
  }
  const stun = arg('stun') ? null : await startStunResponder();
  const iceServers = [{ urls: arg('stun') ?? stun.url }];
  const peer = await startWeriftPeer({ url, roomId, iceServers, log: (l) => console.log(l) });
  const report = setInterval(() => {
    const s = peer.state;
    console.log(`state ${s.pcState}, DataChannel ${s.dcState}, RTT ${s.rtts.at(-1)?.toFixed(1) ?? '-'} ms, RTP packets ${s.rtpPackets}`);
  }, 2000);
  process.on('SIGINT', async () => {
    clearInterval(report);
    await peer.close();
    await stun?.close();
    process.exit(0);
  });
}
