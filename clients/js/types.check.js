// Compile-time checks of the public typings: `tsc --checkJs --strict` reads this file (ctest
// e2e_client_types); it is never run.
import { SignalingClient, SignalingCloseError } from './signaling-client.js';

const c = new SignalingClient({ reconnect: { initialDelayMs: 100 }, queueOverflow: 'drop-newest' });
c.on('peer-joined', (e) => {
  /** @type {string} */
  const id = e.clientId;
  return id;
});
c.on('welcome', (w) => w.peers + 1);
c.on('close', (e) => (e.willReconnect ? e.delayMs : e.code));
c.on('candidate', (m) => m.sdpMLineIndex ?? m.candidate);
c.on('state', (s) => s === 'reconnecting');
/** @type {'sent' | 'queued' | 'dropped'} */
const r = c.sendOffer('v=0');
c.sendCandidate({ candidate: 'candidate:1', sdpMid: null, sdpMLineIndex: 0 });
c.connect({ url: 'ws://localhost:3002', roomId: 'r', events: true }).catch((err) => {
  if (err instanceof SignalingCloseError) return err.code;
  return r;
});

// @ts-expect-error unknown event name
c.on('no-such-event', () => {});
// @ts-expect-error payload of another event
c.on('offer', (/** @type {{clientId: string}} */ e) => e);
// @ts-expect-error sdp must be a string
c.sendOffer(42);
// @ts-expect-error roomId is required
c.connect({ url: 'ws://localhost:3002' });
// @ts-expect-error not an overflow policy
new SignalingClient({ queueOverflow: 'drop-all' });

// Session resume (opt-in).
const rc = new SignalingClient({ resumeHistory: 64 });
rc.connect({ url: 'ws://localhost:3002', roomId: 'r', resume: true });
rc.on('session-lost', (e) => (e.reason === 'invalid-token' ? e.dropped : 0));
rc.on('resumed', (e) => (e.recovered ? e.received ?? 0 : -1));
rc.on('peer-suspended', (e) => e.clientId);
rc.on('peer-resumed', (e) => e.clientId);
rc.on('open', (e) => e.reconnected && e.resumed === true);
rc.on('welcome', (w) => w.resumeToken ?? w.clientId);
/** @type {number | undefined} */
const lastSeq = rc.session?.lastSeq;
/** @type {string | undefined} */
const token = rc.session?.resumeToken;
// @ts-expect-error not a reason the client gives
rc.on('session-lost', (e) => e.reason === 'expired');
// @ts-expect-error resume is a boolean; the token is the client's business
rc.connect({ url: 'ws://localhost:3002', roomId: 'r', resume: 'tok' });
// @ts-expect-error the session is read-only
rc.session = null;

// ICE servers from the server (TURN_URLS).
c.on('ice-servers', (list) => list.map((s) => s.username ?? s.urls));
/** @type {import('./signaling-client.js').IceServer[] | null} */
const ice = c.iceServers;
const pc = new RTCPeerConnection(
  c.rtcConfiguration(/** @type {RTCConfiguration} */ ({ iceTransportPolicy: 'relay' })),
);
/** @type {RTCIceTransportPolicy | undefined} */
const policy = c.rtcConfiguration(/** @type {RTCConfiguration} */ ({})).iceTransportPolicy;
c.rtcConfiguration().iceServers.push({ urls: 'stun:s:3478' });
// @ts-expect-error iceServers is read-only
c.iceServers = [];
export { ice, pc, policy };
