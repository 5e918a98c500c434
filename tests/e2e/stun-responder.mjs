// A minimal STUN binding responder (RFC 5389) on 127.0.0.1. werift always queries a STUN
// server while gathering (stun.l.google.com when none is configured, which here means a
// DNS failure after seconds, and elsewhere traffic leaving the machine); pointing it at this
// one keeps gathering local and quick. It answers every Binding request with the sender's
// address in XOR-MAPPED-ADDRESS.
import dgram from 'node:dgram';

const MAGIC = 0x2112a442;

/** @returns {Promise<{url: string, port: number, close: () => Promise<void>}>} */
export function startStunResponder({ host = '127.0.0.1' } = {}) {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 20 || msg.readUInt16BE(0) !== 0x0001 || msg.readUInt32BE(4) !== MAGIC) return;
    const res = Buffer.alloc(32);
    res.writeUInt16BE(0x0101, 0); // Binding success response
    res.writeUInt16BE(12, 2); // attributes length
    res.writeUInt32BE(MAGIC, 4);
    msg.copy(res, 8, 8, 20); // transaction id
    res.writeUInt16BE(0x0020, 20); // XOR-MAPPED-ADDRESS
    res.writeUInt16BE(8, 22);
    res.writeUInt8(0, 24);
    res.writeUInt8(0x01, 25); // IPv4
    res.writeUInt16BE(rinfo.port ^ (MAGIC >>> 16), 26);
    const ip = rinfo.address.split('.').reduce((a, o) => (a << 8) | Number(o), 0) >>> 0;
    res.writeUInt32BE((ip ^ MAGIC) >>> 0, 28);
    sock.send(res, rinfo.port, rinfo.address);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, host, () => {
      const { port } = sock.address();
      resolve({ port, url: `stun:${host}:${port}`, close: () => new Promise((r) => sock.close(r)) });
    });
  });
}
