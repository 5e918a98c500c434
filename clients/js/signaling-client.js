// SignalingClient: a dependency-free client for signal-server (see docs/CLIENTS.md).
// Works in browsers and in Node 20+ given a WebSocket implementation (the `WebSocket`
// option, or the global one of `node --experimental-websocket` / Node 22).

/**
 * @typedef {{type: 'offer' | 'answer', sdp: string}} SdpMessage
 * @typedef {{type: 'candidate', candidate: string, sdpMid?: string | null,
 *            sdpMLineIndex?: number | null}} CandidateMessage
 * @typedef {{type: 'control', action: string, payload?: unknown}} ControlMessage
 * @typedef {{type: 'peer-disconnected'}} PeerDisconnectedMessage
 * @typedef {SdpMessage | CandidateMessage | ControlMessage} OutgoingMessage
 * @typedef {OutgoingMessage | PeerDisconnectedMessage} IncomingMessage
 *
 * @typedef {{urls: string | string[], username?: string, credential?: string}} IceServer
 *   one entry of RTCConfiguration.iceServers
 * @typedef {{clientId: string, roomId: string, peers: number, sessionId?: string,
 *            resumeToken?: string, resumeWindowMs?: number, iceServers?: IceServer[]}} Welcome
 * @typedef {{recovered: boolean, received?: number, iceServers?: IceServer[]}} Resumed
 * @typedef {'not-recovered' | 'invalid-token' | 'invalid-lastSeq' | 'cannot-resend'} SessionLostReason
 * @typedef {{reason: SessionLostReason, dropped: number}} SessionLost
 * @typedef {{sessionId: string, resumeToken: string, resumeWindowMs: number, lastSeq: number,
 *            sent: number}} SessionInfo
 * @typedef {{code: number, reason: string, wasClean: boolean, willReconnect: boolean,
 *            delayMs?: number}} CloseInfo
 * @typedef {{attempt: number, delayMs: number, code: number, reason: string}} ReconnectInfo
 * @typedef {'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'} State
 *
 * @typedef {object} EventMap
 * @property {{reconnected: boolean, resumed?: boolean}} open admitted to the room (see docs:
 *   "ready"); `resumed` only with the resume option: true when the old session continues
 * @property {Welcome} welcome                    events=1 only: the server's welcome
 * @property {Resumed} resumed                    resume only: the server's answer to a resume
 * @property {IceServer[]} ice-servers            the server handed out ICE servers (with fresh
 *   TURN credentials): in a welcome, or in a resumed reply
 * @property {SessionLost} session-lost           resume only: the session is gone, renegotiate
 * @property {SdpMessage} offer
 * @property {SdpMessage} answer
 * @property {CandidateMessage} candidate
 * @property {ControlMessage} control             controls other than the ones with events of their own
 * @property {{clientId: string}} peer-joined     events=1 only
 * @property {{clientId: string}} peer-suspended  events=1 only: a resumable member dropped, seat held
 * @property {{clientId: string}} peer-resumed    events=1 only: that member came back
 * @property {PeerDisconnectedMessage} peer-disconnected
 * @property {ControlMessage} schema-error        the server refused one of our messages
 * @property {IncomingMessage} message            every message received, before the typed event
 * @property {CloseInfo} close                    every socket close, with what happens next
 * @property {ReconnectInfo} reconnecting         a reconnect is scheduled
 * @property {{dropped: OutgoingMessage}} queue-overflow
 * @property {State} state
 *
 * @typedef {object} ReconnectOptions
 * @property {number} [initialDelayMs=500]   first delay (before jitter)
 * @property {number} [maxDelayMs=15000]     cap of the exponential delay
 * @property {number} [factor=2]             growth per failed attempt
 * @property {number} [drainingDelayMs=1000] least delay after 1012 (server draining)
 * @property {number} [maxAttempts=Infinity] consecutive failed attempts before giving up
 * @property {number} [stableAfterMs=2000]   an open socket older than this resets the attempts
 * @property {number[]} [retryCodes=[1006,1011,1012,1013]] close codes that reconnect
 *
 * @typedef {object} ClientOptions
 * @property {typeof WebSocket} [WebSocket]  implementation (default: globalThis.WebSocket)
 * @property {ReconnectOptions | false} [reconnect] false turns reconnecting off
 * @property {number} [queueLimit=256]       outgoing messages held while not open
 * @property {'drop-oldest' | 'drop-newest' | 'throw'} [queueOverflow='drop-oldest']
 * @property {() => number} [random=Math.random] jitter source (tests)
 * @property {number} [resumeHistory=256]    resume only: sent messages kept for re-sending
 * @property {(err: unknown, type: string) => void} [onListenerError] called when a listener
 *   throws (default: rethrown asynchronously, so it reaches window.onerror / the console)
 *
 * @typedef {object} ConnectOptions
 * @property {string} url        ws:// or wss:// base URL (path and query are kept)
 * @property {string} roomId
 * @property {string} [token]    JWT, sent as the `token` query parameter
 * @property {boolean} [events]  ask for welcome / peer-joined (events=1)
 * @property {boolean} [resume]  open a resumable session (resume=1, implies events) and resume
 *   it after an unclean drop
 */

const DEFAULT_RECONNECT = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 15000,
  factor: 2,
  drainingDelayMs: 1000,
  maxAttempts: Infinity,
  stableAfterMs: 2000,
  retryCodes: [1006, 1011, 1012, 1013],
});

/** Close codes signal-server uses, with the client's reading of them. */
export const CloseCodes = Object.freeze({
  NORMAL: 1000, // also "Room is full": never retried
  ABNORMAL: 1006, // no close frame: network loss, server crash
  POLICY: 1008, // invalid roomId, auth, origin...: never retried
  TOO_BIG: 1009,
  INTERNAL: 1011,
  DRAINING: 1012,
  TRY_AGAIN: 1013, // capacity, rate limit, Redis unavailable, overloaded
  RESUMED_ELSEWHERE: 4001, // another connection took the session over: never retried
});

/** 1008 reasons that refuse a resume token, not the client: start a fresh session instead. */
const RESUME_REFUSALS = Object.freeze({
  'Invalid resume token': /** @type {SessionLostReason} */ ('invalid-token'),
  'Invalid lastSeq': /** @type {SessionLostReason} */ ('invalid-lastSeq'),
});

const OPEN = 1; // WebSocket.OPEN, independent of the implementation's statics

/**
 * How long a socket that failed before opening (`error`) may take to fire its `close` before
 * the client treats it as closed abnormally (1006). Browsers and the `ws` package fire `close`
 * right after `error`; Node 20's built-in WebSocket (undici 6, nodejs/undici#3546) never does.
 */
const ERROR_CLOSE_GRACE_MS = 1000;

/** Error given to a `connect()` promise that will never open. */
export class SignalingCloseError extends Error {
  /** @param {number} code @param {string} reason */
  constructor(code, reason) {
    super(`signaling closed: ${code}${reason ? ` ${reason}` : ''}`);
    this.name = 'SignalingCloseError';
    this.code = code;
    this.reason = reason;
  }
}

/**
 * Builds the connect URL: `url` with roomId, token, events=1 and resume in its query.
 * @param {ConnectOptions} opts
 * @param {{resumeToken: string, lastSeq: number} | null} [resumeFrom] the session to resume
 *   (resume option only); without it a resumable client asks for a new session (resume=1)
 * @returns {string}
 */
export function buildUrl({ url, roomId, token, events, resume }, resumeFrom = null) {
  const u = new URL(url);
  u.searchParams.set('roomId', roomId);
  if (token) u.searchParams.set('token', token);
  // resume implies events on new servers; asking anyway keeps the welcome (and so admission)
  // coming from a server that does not know resume.
  if (events || resume) u.searchParams.set('events', '1');
  if (resume) {
    u.searchParams.set('resume', resumeFrom ? resumeFrom.resumeToken : '1');
    if (resumeFrom) u.searchParams.set('lastSeq', String(resumeFrom.lastSeq));
  }
  return u.toString();
}

/**
 * Delay before reconnect attempt `attempt` (1-based) after a close with `code`:
 * exponential, capped, with "equal jitter" (half fixed, half random) so that the delay
 * still grows while clients closed together do not come back together.
 * @param {number} attempt
 * @param {number} code
 * @param {Required<ReconnectOptions>} r
 * @param {() => number} random
 * @returns {number}
 */
export function backoffDelay(attempt, code, r, random = Math.random) {
  const base = Math.min(r.maxDelayMs, r.initialDelayMs * Math.pow(r.factor, attempt - 1));
  let delay = base / 2 + random() * (base / 2);
  if (code === CloseCodes.DRAINING) delay = Math.max(delay, r.drainingDelayMs);
  return Math.round(delay);
}

export class SignalingClient {
  /** @param {ClientOptions} [options] */
  constructor(options = {}) {
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('SignalingClient: no WebSocket implementation (pass options.WebSocket)');
    }
    /** @type {Required<ReconnectOptions> | null} */
    this._reconnect =
      options.reconnect === false ? null : { ...DEFAULT_RECONNECT, ...(options.reconnect ?? {}) };
    this._queueLimit = options.queueLimit ?? 256;
    this._queueOverflow = options.queueOverflow ?? 'drop-oldest';
    this._random = options.random ?? Math.random;
    this._resumeHistory = options.resumeHistory ?? 256;
    this._onListenerError =
      options.onListenerError ??
      ((err) =>
        setTimeout(() => {
          throw err;
        }));
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {OutgoingMessage[]} */
    this._queue = [];
    /** @type {State} */
    this._state = 'idle';
    /** @type {WebSocket | null} */
    this._ws = null;
    this._attempt = 0;
    this._everOpened = false;
    this._openedAt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._timer = undefined;
    /**
     * Armed when the current socket failed before opening: fires its overdue close (see _open).
     * @type {ReturnType<typeof setTimeout> | undefined}
     */
    this._errorTimer = undefined;
    /** @type {{resolve: () => void, reject: (err: unknown) => void} | null} */
    this._pending = null;
    /** @type {Welcome | null} */
    this.welcome = null;
    /** @type {IceServer[] | null} */
    this._iceServers = null;
    /** @type {ConnectOptions | null} */
    this._opts = null;
    // Resumable session (resume option, and a server that gave a token).
    /** @type {{sessionId: string, resumeToken: string, resumeWindowMs: number} | null} */
    this._session = null;
    this._lastSeq = 0;
    this._sentCount = 0; // messages written in this session: the server's `received` counts these
    /**
     * The last `resumeHistory` messages written, with their 1-based index in the session, to
     * re-send those the server never got. Overflow drops the oldest: the server has most likely
     * accepted it long ago, and if a resume does need it the session is treated as lost
     * ('cannot-resend') rather than relayed with a hole.
     * @type {{n: number, text: string}[]}
     */
    this._sentLog = [];
    this._resumeAttempt = false; // the current socket asked to resume (carried the token)
  }

  /** @returns {State} */
  get state() {
    return this._state;
  }

  /** Messages waiting for the socket to open. */
  get queued() {
    return this._queue.length;
  }

  /**
   * The ICE servers the server handed out last (welcome or resumed; servers with TURN_URLS),
   * TURN credentials included; null when it handed out none.
   * @returns {IceServer[] | null}
   */
  get iceServers() {
    return this._iceServers;
  }

  /**
   * An RTCPeerConnection configuration: `base` with the server's ICE servers, when it handed
   * out some; else `base` as it is (its own iceServers, or none).
   *   new RTCPeerConnection(client.rtcConfiguration({ iceTransportPolicy: 'relay' }))
   * @template {{iceServers?: IceServer[]}} T
   * @param {T} [base]
   * @returns {T & {iceServers: IceServer[]}}
   */
  rtcConfiguration(base = /** @type {T} */ ({})) {
    return { ...base, iceServers: this._iceServers ?? base.iceServers ?? [] };
  }

  /**
   * The resumable session (resume option), or null before the welcome and after it is lost.
   * @returns {SessionInfo | null}
   */
  get session() {
    const s = this._session;
    return s && { ...s, lastSeq: this._lastSeq, sent: this._sentCount };
  }

  /**
   * Connects and keeps connecting per the reconnect policy. Resolves when first admitted to
   * the room; rejects with SignalingCloseError if it closes for good before that.
   * @param {ConnectOptions} opts
   * @returns {Promise<void>}
   */
  connect(opts) {
    if (this._state !== 'idle' && this._state !== 'closed') {
      return Promise.reject(new Error('SignalingClient: already connecting or connected'));
    }
    if (!opts || typeof opts.url !== 'string' || typeof opts.roomId !== 'string' || !opts.roomId) {
      return Promise.reject(new TypeError('SignalingClient.connect: url and roomId are required'));
    }
    this._opts = { ...opts };
    this._attempt = 0;
    this._everOpened = false;
    this._resetSession();
    return new Promise((resolve, reject) => {
      this._pending = { resolve, reject };
      this._open();
    });
  }

  /**
   * Closes for good: no reconnect, the queue is dropped. The close frame also ends a resumable
   * session on the server (peers get peer-disconnected at once).
   * @param {number} [code=1000] @param {string} [reason='']
   */
  close(code = 1000, reason = '') {
    clearTimeout(this._timer);
    this._timer = undefined;
    this._queue.length = 0;
    this._resetSession();
    const ws = this._ws;
    this._ws = null;
    const wasOpen = this._state === 'open';
    this._setState('closed');
    if (ws) {
      this._detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
    if (ws || wasOpen) {
      this._emit('close', { code, reason, wasClean: true, willReconnect: false });
    }
    this._settle(new SignalingCloseError(code, reason || 'closed by client'));
  }

  /** @param {string} sdp */
  sendOffer(sdp) {
    requireString(sdp, 'sdp');
    return this.send({ type: 'offer', sdp });
  }

  /** @param {string} sdp */
  sendAnswer(sdp) {
    requireString(sdp, 'sdp');
    return this.send({ type: 'answer', sdp });
  }

  /**
   * Accepts an RTCIceCandidate (or its toJSON()) or the candidate string.
   * @param {string | {candidate: string, sdpMid?: string | null, sdpMLineIndex?: number | null}} c
   */
  sendCandidate(c) {
    const init = typeof c === 'string' ? { candidate: c } : c;
    requireString(init?.candidate, 'candidate');
    /** @type {CandidateMessage} */
    const msg = { type: 'candidate', candidate: init.candidate };
    if (init.sdpMid !== undefined) msg.sdpMid = init.sdpMid;
    if (init.sdpMLineIndex !== undefined) msg.sdpMLineIndex = init.sdpMLineIndex;
    return this.send(msg);
  }

  /** @param {string} action @param {unknown} [payload] */
  sendControl(action, payload) {
    requireString(action, 'action');
    /** @type {ControlMessage} */
    const msg = { type: 'control', action };
    if (payload !== undefined) msg.payload = payload;
    return this.send(msg);
  }

  /**
   * Sends now when open; otherwise queues (bounded, see queueOverflow) until the next open.
   * Before connect() messages are queued too; after close() (or a close for good) they are
   * dropped.
   * @param {OutgoingMessage} msg
   * @returns {'sent' | 'queued' | 'dropped'}
   */
  send(msg) {
    if (this._state === 'closed') return 'dropped';
    if (this._state === 'open' && this._ws && this._ws.readyState === OPEN) {
      this._write(this._ws, JSON.stringify(msg));
      return 'sent';
    }
    if (this._queue.length >= this._queueLimit) {
      if (this._queueOverflow === 'throw') {
        throw new RangeError(`SignalingClient: outgoing queue full (${this._queueLimit})`);
      }
      if (this._queueOverflow === 'drop-newest') {
        this._emit('queue-overflow', { dropped: msg });
        return 'dropped';
      }
      this._emit('queue-overflow', { dropped: this._queue.shift() });
    }
    this._queue.push(msg);
    return 'queued';
  }

  /**
   * @template {keyof EventMap} K
   * @param {K} type @param {(ev: EventMap[K]) => void} listener
   * @returns {() => void} removes the listener
   */
  on(type, listener) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /**
   * @template {keyof EventMap} K
   * @param {K} type @param {(ev: EventMap[K]) => void} listener
   */
  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /**
   * @template {keyof EventMap} K
   * @param {K} type @param {(ev: EventMap[K]) => void} listener
   */
  once(type, listener) {
    const off = this.on(type, (ev) => {
      off();
      listener(ev);
    });
    return off;
  }

  // --- internals ---

  /** @param {string} type @param {unknown} ev */
  _emit(type, ev) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(ev);
      } catch (err) {
        // A listener's bug must not break the client nor the other listeners.
        this._onListenerError(err, type);
      }
    }
  }

  /** @param {State} s */
  _setState(s) {
    if (this._state === s) return;
    this._state = s;
    this._emit('state', s);
  }

  /** @param {unknown} err null: resolve */
  _settle(err) {
    const p = this._pending;
    if (!p) return;
    this._pending = null;
    if (err) p.reject(err);
    else p.resolve();
  }

  _open() {
    this._timer = undefined;
    this._setState(this._everOpened ? 'reconnecting' : 'connecting');
    const opts = /** @type {ConnectOptions} */ (this._opts);
    const s = opts.resume ? this._session : null;
    this._resumeAttempt = s !== null;
    // A resumed session keeps its welcome (same clientId); a fresh join gets a new one.
    if (!s) this.welcome = null;
    /** @type {WebSocket} */
    let ws;
    try {
      ws = new this._WebSocket(
        buildUrl(opts, s && { resumeToken: s.resumeToken, lastSeq: this._lastSeq }),
      );
    } catch (err) {
      this._settle(err);
      this._setState('closed');
      return;
    }
    if ('binaryType' in ws) ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._openedAt = 0;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._openedAt = Date.now();
      // With events=1 the welcome proves admission (checks run after the upgrade, so a
      // rejected client sees `open` and then a close frame); wait for it before flushing.
      // A resume is admitted by `resumed` instead.
      if (!opts.events && !opts.resume) this._ready();
    };
    ws.onmessage = (e) => this._onMessage(e.data);
    ws.onclose = (e) => this._onClose(ws, e.code, e.reason, e.wasClean);
    // The standard follows `error` with `close`, which is what the client acts on. A socket that
    // fails to open on Node 20's built-in WebSocket fires no close (nodejs/undici#3546), which
    // would leave the client waiting for good: give it ERROR_CLOSE_GRACE_MS, then treat the
    // socket as closed abnormally. A close arriving in time (browsers, `ws`) is handled as ever;
    // one arriving later finds the socket detached and is ignored.
    ws.onerror = () => {
      if (opened || ws !== this._ws || this._errorTimer !== undefined) return;
      this._errorTimer = setTimeout(() => {
        this._errorTimer = undefined;
        this._onClose(ws, CloseCodes.ABNORMAL, '', false);
      }, ERROR_CLOSE_GRACE_MS);
    };
  }

  /**
   * Stops listening to a socket that is no longer the client's: any event it fires later
   * (a late `close` included) is ignored.
   * @param {WebSocket} ws
   */
  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    clearTimeout(this._errorTimer);
    this._errorTimer = undefined;
  }

  /**
   * @param {string[]} [resend] messages of a resumed session the server never got; they keep
   *   their session index, so they go out before anything new
   * @param {boolean} [resumed]
   */
  _ready(resend = [], resumed = false) {
    const reconnected = this._everOpened;
    this._everOpened = true;
    const ws = /** @type {WebSocket} */ (this._ws);
    // Before the state change: a 'state' listener that sends would otherwise take the index
    // the server expects for the first re-sent message.
    for (const text of resend) ws.send(text);
    this._setState('open');
    for (const msg of this._queue.splice(0)) this._write(ws, JSON.stringify(msg));
    const opts = /** @type {ConnectOptions} */ (this._opts);
    this._emit('open', opts.resume ? { reconnected, resumed } : { reconnected });
    this._settle(null);
  }

  /** @param {WebSocket} ws @param {string} text */
  _write(ws, text) {
    ws.send(text);
    if (!this._session) return;
    this._sentCount += 1;
    if (this._resumeHistory <= 0) return;
    this._sentLog.push({ n: this._sentCount, text });
    if (this._sentLog.length > this._resumeHistory) this._sentLog.shift();
  }

  _resetSession() {
    this._session = null;
    this._lastSeq = 0;
    this._sentCount = 0;
    this._sentLog = [];
    this._resumeAttempt = false;
  }

  /**
   * The server's session is gone (or unusable): what was queued belonged to the old
   * negotiation, so it is dropped rather than sent into the new session.
   * @param {SessionLostReason} reason
   */
  _loseSession(reason) {
    const dropped = this._queue.length;
    this._queue.length = 0;
    this._resetSession();
    this.welcome = null;
    this._emit('session-lost', { reason, dropped });
  }

  /**
   * Takes the iceServers of a welcome or resumed payload. `fresh`: a welcome, which replaces
   * whatever an earlier session was given (a server without TURN_URLS gives none).
   * @param {unknown} list @param {boolean} fresh
   */
  _takeIceServers(list, fresh) {
    if (!isIceServerList(list)) {
      if (fresh) this._iceServers = null;
      return;
    }
    this._iceServers = list;
    this._emit('ice-servers', this._iceServers);
  }

  /** @param {Welcome | undefined} w */
  _onWelcome(w) {
    this.welcome = w ?? null;
    const ws = this._ws;
    this._takeIceServers(w?.iceServers, true);
    if (this._ws !== ws) return; // an ice-servers listener closed the client
    if (/** @type {ConnectOptions} */ (this._opts).resume) {
      this._resetSession();
      // A server that does not know resume sends no token: reconnects then join afresh.
      if (w && typeof w.resumeToken === 'string' && w.resumeToken) {
        this._session = {
          sessionId: String(w.sessionId ?? ''),
          resumeToken: w.resumeToken,
          resumeWindowMs: typeof w.resumeWindowMs === 'number' ? w.resumeWindowMs : 0,
        };
      }
    }
    this._emit('welcome', w);
    if (this._ws === ws && this._state !== 'open') this._ready(); // unless a listener closed
  }

  /** @param {Resumed | undefined} p */
  _onResumed(p) {
    this._resumeAttempt = false;
    const ws = /** @type {WebSocket} */ (this._ws);
    const payload = p ?? { recovered: false };
    // recovered:false is followed by a welcome, which carries the new session's.
    if (payload.recovered === true) {
      this._takeIceServers(payload.iceServers, false);
      if (this._ws !== ws) return; // an ice-servers listener closed the client
    }
    this._emit('resumed', payload);
    if (this._ws !== ws) return; // a listener closed the client
    if (payload.recovered !== true) {
      // The server goes on with a fresh join; its welcome admits us into the new session.
      this._loseSession('not-recovered');
      return;
    }
    const received = payload.received;
    const oldestKept = this._sentLog.length ? this._sentLog[0].n : this._sentCount + 1;
    // More than we wrote, or a re-send the log no longer holds: exactly-once is out of reach,
    // so leave and join afresh, which peers see as peer-disconnected + peer-joined, the same
    // as a session the server lost.
    if (
      typeof received !== 'number' ||
      !Number.isInteger(received) ||
      received < 0 ||
      received > this._sentCount ||
      oldestKept > received + 1
    ) {
      this._ws = null;
      this._detach(ws);
      ws.close(CloseCodes.NORMAL, 'Session lost');
      this._afterClose(CloseCodes.NORMAL, 'Session lost', true, 'cannot-resend');
      return;
    }
    this._sentLog = this._sentLog.filter((e) => e.n > received);
    this._ready(
      this._sentLog.map((e) => e.text),
      true,
    );
  }

  /** @param {unknown} data string, or ArrayBuffer for a binary frame */
  _onMessage(data) {
    let msg;
    try {
      const text =
        typeof data === 'string' ? data : new TextDecoder().decode(/** @type {ArrayBuffer} */ (data));
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    // Only the server's own welcome and resumed come without seq in a resumable session;
    // the same actions with a seq were relayed from a peer and are plain controls.
    const fromServer = msg.seq === undefined;
    if (this._session && Number.isInteger(msg.seq)) {
      // Replays start after lastSeq by contract; a duplicate still must not reach the app.
      if (msg.seq <= this._lastSeq) return;
      this._lastSeq = msg.seq;
    }
    this._emit('message', msg);
    if (msg.type === 'control') {
      if (msg.action === 'welcome' && fromServer) return this._onWelcome(msg.payload);
      if (msg.action === 'resumed' && fromServer && this._resumeAttempt) {
        return this._onResumed(msg.payload);
      }
      if (msg.action === 'peer-joined') return this._emit('peer-joined', msg.payload ?? {});
      if (msg.action === 'peer-suspended') return this._emit('peer-suspended', msg.payload ?? {});
      if (msg.action === 'peer-resumed') return this._emit('peer-resumed', msg.payload ?? {});
      if (msg.action === 'schema-error') return this._emit('schema-error', msg);
      return this._emit('control', msg);
    }
    if (['offer', 'answer', 'candidate', 'peer-disconnected'].includes(msg.type)) {
      this._emit(msg.type, msg);
    }
  }

  /**
   * @param {WebSocket} ws @param {number} code @param {string} reason @param {boolean} wasClean
   */
  _onClose(ws, code, reason, wasClean) {
    if (ws !== this._ws) return; // replaced, closed by close(), or already taken as closed
    this._ws = null;
    this._detach(ws);
    /** @type {SessionLostReason | null} */
    let lost = null;
    if (code === CloseCodes.POLICY && this._resumeAttempt && Object.hasOwn(RESUME_REFUSALS, reason)) {
      lost = RESUME_REFUSALS[/** @type {keyof typeof RESUME_REFUSALS} */ (reason)];
    }
    this._afterClose(code, reason, wasClean, lost);
  }

  /**
   * Reports a socket's end and reconnects or closes for good.
   * @param {number} code @param {string} reason @param {boolean} wasClean
   * @param {SessionLostReason | null} lost the session is unusable: reconnect to a fresh one
   *   (whatever the code) after telling the app
   */
  _afterClose(code, reason, wasClean, lost) {
    const r = this._reconnect;
    if (this._openedAt && r && Date.now() - this._openedAt >= r.stableAfterMs) this._attempt = 0;
    const retry =
      r !== null &&
      this._attempt < r.maxAttempts &&
      (lost !== null ||
        (code !== CloseCodes.RESUMED_ELSEWHERE && r.retryCodes.includes(code)));
    if (!retry) {
      this._queue.length = 0;
      this._resetSession();
      this._setState('closed');
      this._emit('close', { code, reason, wasClean, willReconnect: false });
      this._settle(new SignalingCloseError(code, reason));
      return;
    }
    this._attempt += 1;
    const delayMs = backoffDelay(this._attempt, code, r, this._random);
    this._setState('reconnecting');
    this._emit('close', { code, reason, wasClean, willReconnect: true, delayMs });
    if (lost !== null && this._state === 'reconnecting') this._loseSession(lost);
    // A 'close' or 'session-lost' listener may have called close(): no reconnect then.
    if (this._state !== 'reconnecting') return;
    // Armed before the event, so that close() from its listener cancels it.
    this._timer = setTimeout(() => this._open(), delayMs);
    this._emit('reconnecting', { attempt: this._attempt, delayMs, code, reason });
  }
}

/**
 * An iceServers array RTCPeerConnection takes: entries with urls (a string or strings).
 * @param {unknown} list
 * @returns {list is IceServer[]}
 */
function isIceServerList(list) {
  /** @param {unknown} u */
  const isString = (u) => typeof u === 'string';
  return (
    Array.isArray(list) &&
    list.every(
      (e) =>
        e !== null &&
        typeof e === 'object' &&
        (isString(e.urls) || (Array.isArray(e.urls) && e.urls.every(isString))),
    )
  );
}

/** @param {unknown} v @param {string} name */
function requireString(v, name) {
  if (typeof v !== 'string' || v.length === 0) {
    throw new TypeError(`SignalingClient: ${name} must be a non-empty string`);
  }
}
