// Demo of SignalingClient: two tabs in one room set up a WebRTC call (canvas video + a
// DataChannel). The member already in the room offers when it hears `peer-joined`. The session
// is resumable: after a network blip the client resumes it and the call goes on untouched;
// when the server could not keep it (`session-lost`), the call is set up again.
//
// ICE servers come from the server's welcome when it hands some out (TURN_URLS, TURN_SECRET);
// the page shows which candidate pair the call uses: host (same network), srflx (through NATs,
// found by STUN) or relay (through a TURN server).
//
// Query parameters: server (ws URL, default ws://<this host>:3002), room, autojoin=1, relay=1
// (iceTransportPolicy 'relay': TURN only, to try the TURN server).
import { SignalingClient } from '../js/signaling-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** Everything the page knows, also read by the end-to-end tests. */
const demo = {
  signaling: 'idle',
  clientId: null,
  role: null, // 'offerer' | 'answerer'
  pcState: 'new',
  iceState: 'new',
  dcState: 'closed',
  rtts: [],
  received: [], // DataChannel messages from the peer
  frames: 0,
  bothJoinedAt: null, // ms since epoch (sub-ms): the moment this tab knew both were in
  connectedAt: null, // RTCPeerConnection reached 'connected'
  session: 'none', // 'new' | 'resumed' | 'lost: REASON' | 'not resumable' (server without resume)
  resumes: 0, // sessions resumed without loss
  sessionsLost: 0,
  lastLost: null, // reason of the last session-lost
  offersSent: 0,
  offersReceived: 0,
  answersReceived: 0,
  iceServers: [], // the URLs the server handed out (welcome / resumed)
  iceTransportPolicy: params.get('relay') === '1' ? 'relay' : 'all',
  localCandidates: [], // types of the candidates gathered: host, srflx, relay
  gathering: 'new', // iceGatheringState
  iceErrors: [], // icecandidateerror: {code, text, url} (401: a TURN credential refused)
  pair: null, // the selected candidate pair: {local, remote, protocol, relayProtocol, ...}
  errors: [],
};
window.demo = demo;

let client = null;
let pc = null;
let dc = null;
let pingTimer = null;
let pendingCandidates = [];
let chain = Promise.resolve(); // signaling steps run one after the other
const now = () => performance.timeOrigin + performance.now();

function log(msg) {
  const line = `${new Date().toISOString().slice(11, 23)} ${msg}`;
  $('log').textContent += `${line}\n`;
  $('log').scrollTop = $('log').scrollHeight;
}

function fail(err) {
  demo.errors.push(String(err?.message ?? err));
  log(`error: ${err?.message ?? err}`);
}

function show() {
  $('sigState').textContent = demo.signaling;
  $('session').textContent =
    demo.resumes || demo.sessionsLost
      ? `${demo.session} (resumes: ${demo.resumes}, lost: ${demo.sessionsLost})`
      : demo.session;
  $('clientId').textContent = demo.clientId ?? '-';
  $('role').textContent = demo.role ?? '-';
  $('pcState').textContent = demo.pcState;
  $('iceState').textContent = demo.iceState;
  $('dcState').textContent = demo.dcState;
  const last = demo.rtts.at(-1);
  $('rtt').textContent = last === undefined ? '-' : `${last.toFixed(1)} ms (${demo.rtts.length} pings)`;
  $('frames').textContent = String(demo.frames);
  $('setupMs').textContent =
    demo.bothJoinedAt && demo.connectedAt ? `${(demo.connectedAt - demo.bothJoinedAt).toFixed(0)} ms` : '-';
  $('iceServers').textContent = demo.iceServers.length
    ? `${demo.iceServers.join(' ')}${demo.iceTransportPolicy === 'relay' ? ' (relay only)' : ''}`
    : 'none from the server';
  const p = demo.pair;
  $('pair').textContent = p
    ? `${p.local} ↔ ${p.remote} (${p.protocol}${p.relayProtocol ? `, to TURN over ${p.relayProtocol}` : ''}): ` +
      `${p.localAddress} ↔ ${p.remoteAddress}`
    : demo.iceErrors.length
      ? `none; ICE server errors: ${[...new Set(demo.iceErrors.map((e) => `${e.code} ${e.text}`))].join(', ')}`
      : '-';
}

// The candidate pair ICE selected, from getStats(): its two ends' types say how the call goes.
async function updatePair() {
  const p = pc;
  if (!p) return;
  const stats = await p.getStats();
  if (p !== pc) return;
  let pair = null;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  if (!pair) return;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const was = demo.pair && `${demo.pair.local}/${demo.pair.remote}`;
  demo.pair = {
    local: local?.candidateType,
    remote: remote?.candidateType,
    protocol: local?.protocol,
    relayProtocol: local?.relayProtocol ?? null,
    localAddress: `${local?.address}:${local?.port}`,
    remoteAddress: `${remote?.address}:${remote?.port}`,
  };
  if (was !== `${demo.pair.local}/${demo.pair.remote}`) {
    log(`candidate pair: ${demo.pair.local} ↔ ${demo.pair.remote} (${demo.pair.protocol})`);
  }
  show();
}

// --- the video we send: an animated canvas ---
const canvas = $('local');
const ctx = canvas.getContext('2d');
let tick = 0;
function draw() {
  tick++;
  const hue = (tick * 3) % 360;
  ctx.fillStyle = `hsl(${hue} 60% 30%)`;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#fff';
  ctx.fillRect((tick * 4) % (canvas.width - 40), 100, 40, 40);
  ctx.font = '20px monospace';
  ctx.fillText(`${demo.clientId?.slice(0, 8) ?? 'not joined'} #${tick}`, 10, 30);
}
draw();
setInterval(draw, 33); // a timer, not rAF: keeps drawing in background tabs
const stream = canvas.captureStream(30);

// --- received video: count decoded frames ---
const video = $('remote');
function countFrames() {
  const q = video.getVideoPlaybackQuality?.();
  if (q) demo.frames = q.totalVideoFrames;
  show();
}
setInterval(countFrames, 200);

function newPeerConnection(role) {
  closePeer();
  demo.role = role;
  demo.pcState = 'new';
  pendingCandidates = [];
  demo.localCandidates = [];
  demo.iceErrors = [];
  demo.pair = null;
  // The server's ICE servers (TURN credentials of this client's own), when it hands some out.
  pc = new RTCPeerConnection(client.rtcConfiguration({ iceTransportPolicy: demo.iceTransportPolicy }));
  pc.onicecandidate = (e) => {
    const c = e.candidate;
    if (!c || !c.candidate) return; // end of candidates: nothing to signal
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
    log(`local candidate ${c.candidate.split(' ').slice(4, 8).join(' ')}`);
    demo.localCandidates.push(c.type ?? c.candidate.split(' ')[7]);
    client.sendCandidate(c.toJSON());
  };
  pc.onicecandidateerror = (e) => {
    // 401: the TURN server refused the credential (expired, or signed with another secret).
    demo.iceErrors.push({ code: e.errorCode, text: e.errorText, url: e.url });
    log(`ICE server error ${e.errorCode} ${e.errorText} (${e.url})`);
    show();
  };
  pc.onicegatheringstatechange = () => {
    demo.gathering = pc.iceGatheringState;
    show();
  };
  pc.onconnectionstatechange = () => {
    demo.pcState = pc.connectionState;
    if (pc.connectionState === 'connected' && !demo.connectedAt) {
      demo.connectedAt = now();
      log(`connected ${(demo.connectedAt - demo.bothJoinedAt).toFixed(1)} ms after both joined`);
    }
    if (pc.connectionState === 'connected') updatePair().catch(fail);
    log(`peer connection: ${pc.connectionState}`);
    show();
  };
  pc.oniceconnectionstatechange = () => {
    demo.iceState = pc.iceConnectionState;
    show();
  };
  pc.ontrack = (e) => {
    log(`remote ${e.track.kind} track`);
    video.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    video.play().catch(fail);
  };
  pc.ondatachannel = (e) => useChannel(e.channel);
  show();
  return pc;
}

function useChannel(channel) {
  dc = channel;
  demo.dcState = dc.readyState;
  dc.onopen = () => {
    demo.dcState = 'open';
    log('DataChannel open');
    ping();
    pingTimer = setInterval(ping, 1000);
    show();
  };
  dc.onclose = () => {
    demo.dcState = 'closed';
    clearInterval(pingTimer);
    show();
  };
  dc.onmessage = (e) => {
    const m = JSON.parse(e.data);
    demo.received.push(m);
    if (m.kind === 'ping') dc.send(JSON.stringify({ kind: 'pong', t: m.t, from: demo.role }));
    if (m.kind === 'pong') demo.rtts.push(performance.now() - m.t);
    show();
  };
}

function ping() {
  if (dc?.readyState === 'open') dc.send(JSON.stringify({ kind: 'ping', t: performance.now(), from: demo.role }));
  updatePair().catch(fail); // ICE may switch pairs during the call
}

function closePeer() {
  clearInterval(pingTimer);
  dc?.close();
  pc?.close();
  dc = null;
  pc = null;
  demo.dcState = 'closed';
  demo.pcState = 'closed';
  video.srcObject = null;
}

async function addRemoteCandidates() {
  for (const c of pendingCandidates.splice(0)) await pc.addIceCandidate(c);
}

// --- signaling ---
function step(fn) {
  chain = chain.then(fn).catch(fail);
}

async function startAsOfferer() {
  newPeerConnection('offerer');
  for (const track of stream.getVideoTracks()) pc.addTrack(track, stream);
  useChannel(pc.createDataChannel('demo'));
  await pc.setLocalDescription(await pc.createOffer());
  client.sendOffer(pc.localDescription.sdp);
  demo.offersSent++;
  log('offer sent');
}

async function answer(sdp) {
  newPeerConnection('answerer');
  await pc.setRemoteDescription({ type: 'offer', sdp });
  for (const track of stream.getVideoTracks()) pc.addTrack(track, stream);
  await pc.setLocalDescription(await pc.createAnswer());
  client.sendAnswer(pc.localDescription.sdp);
  await addRemoteCandidates();
  log('answer sent');
}

function join(server, roomId) {
  client = new SignalingClient();
  window.demoClient = client; // for the end-to-end tests
  const c = client;
  client.on('state', (s) => {
    demo.signaling = s;
    show();
  });
  // Welcome and resumed carry them (fresh TURN credentials); a call set up after this uses them.
  client.on('ice-servers', (list) => {
    demo.iceServers = list.flatMap((s) => [s.urls].flat());
    show();
  });
  client.on('welcome', (w) => {
    demo.clientId = w.clientId;
    if (!c.iceServers) demo.iceServers = []; // this server hands none out
    demo.session = c.session ? 'new' : 'not resumable';
    log(`joined ${w.roomId} as ${w.clientId}; ${w.peers} already there`);
    if (w.peers > 0 && !demo.bothJoinedAt) demo.bothJoinedAt = now();
  });
  client.on('peer-joined', ({ clientId }) => {
    log(`peer joined: ${clientId}`);
    demo.bothJoinedAt = now();
    demo.connectedAt = null;
    step(startAsOfferer);
  });
  client.on('offer', ({ sdp }) => {
    demo.offersReceived++;
    log('offer received');
    step(() => answer(sdp));
  });
  client.on('answer', ({ sdp }) => {
    demo.answersReceived++;
    log('answer received');
    step(async () => {
      await pc.setRemoteDescription({ type: 'answer', sdp });
      await addRemoteCandidates();
    });
  });
  client.on('candidate', ({ candidate, sdpMid, sdpMLineIndex }) => {
    step(async () => {
      const init = { candidate, sdpMid, sdpMLineIndex };
      if (pc?.remoteDescription) await pc.addIceCandidate(init);
      else pendingCandidates.push(init);
    });
  });
  client.on('peer-disconnected', () => {
    log('peer left');
    step(async () => closePeer());
    demo.bothJoinedAt = null;
  });
  // A network blip: the session is resumed (nothing lost, the call is left alone) or, when the
  // server could not keep it, lost: the call is set up again like after a fresh join (the peer
  // sees us leave and join, and offers).
  client.on('open', ({ resumed }) => {
    if (!resumed) return;
    demo.session = 'resumed';
    demo.resumes++;
    log('signaling session resumed: nothing lost');
    show();
  });
  client.on('session-lost', ({ reason }) => {
    demo.session = `lost: ${reason}`;
    demo.sessionsLost++;
    demo.lastLost = reason;
    log(`signaling session lost (${reason}): setting the call up again`);
    step(async () => closePeer());
    demo.bothJoinedAt = demo.connectedAt = null;
    show();
  });
  client.on('peer-suspended', () => log('peer lost its signaling connection; waiting for it to resume'));
  client.on('peer-resumed', () => log('peer resumed its signaling session'));
  client.on('schema-error', () => fail('server refused a message (schema-error)'));
  client.on('close', ({ code, reason, willReconnect, delayMs }) => {
    log(`signaling closed ${code} ${reason}${willReconnect ? `; reconnecting in ${delayMs} ms` : ''}`);
  });
  $('joinBtn').disabled = true;
  $('leaveBtn').disabled = false;
  client.connect({ url: server, roomId, resume: true }).catch(fail);
}

function leave() {
  client?.close();
  closePeer();
  client = null;
  demo.bothJoinedAt = demo.connectedAt = null;
  demo.session = 'none';
  $('joinBtn').disabled = false;
  $('leaveBtn').disabled = true;
  show();
}

$('server').value = params.get('server') ?? `ws://${location.hostname || 'localhost'}:3002`;
$('room').value = params.get('room') ?? `demo-${Math.random().toString(36).slice(2, 8)}`;
$('join').addEventListener('submit', (e) => {
  e.preventDefault();
  join($('server').value, $('room').value);
});
$('leaveBtn').addEventListener('click', leave);
if (params.get('autojoin') === '1') join($('server').value, $('room').value);
show();
