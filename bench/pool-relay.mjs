// A bare Node UDP relay, like the kit's node/fwd-server.js, but with sinkhole's RFC 5452 source-port
// pool: N sockets, each connect(2)ed to the upstream on its own kernel-chosen port, and every query
// sent from one picked at random. It is the measuring stick for what Node allows a forwarder that
// randomises its source port (bench/cpu.sh's `node-pool` peer); the kit's relay uses one socket.
// No cache, no policy, no socket rotation, a random ID per query and the reply matched by socket and ID.
// Usage: node pool-relay.mjs PORT SOCKETS [upstream=127.0.0.2:5300]
import dgram from 'node:dgram';
import { randomFillSync } from 'node:crypto';
const port = +process.argv[2], size = +(process.argv[3] || 1024);
const [uhost, uport] = (process.argv[4] || '127.0.0.2:5300').split(':');
const opts = { type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 };
const down = dgram.createSocket(opts);
// The queries in flight by ID (an ID is in flight on one socket at a time): the socket, the client's port, address and ID.
const cSlot = new Int32Array(65536).fill(-1), cPort = new Int32Array(65536), cAddr = new Array(65536), cId = new Uint16Array(65536);
const deadline = new Float64Array(65536);
const TIMEOUT_MS = 2000;
const random = new Uint32Array(1024);
let r = random.length;
function next() {
  if (r === random.length) { randomFillSync(random); r = 0; }
  return random[r++];
}
function onReply(msg) {
  if (msg.length < 12) return;
  const k = msg.readUInt16BE(0);
  if (cSlot[k] !== this.slot) return;
  msg.writeUInt16BE(cId[k], 0);
  down.send(msg, cPort[k], cAddr[k]);
  cSlot[k] = -1; cAddr[k] = undefined;
}
const pool = [];
for (let i = 0; i < size; i++) {
  const s = dgram.createSocket(opts);
  s.slot = i;
  s.on('message', onReply);
  pool.push(s);
}
down.on('message', (msg, rinfo) => {
  if (msg.length < 12 || (msg[2] & 0x80)) return;
  const v = next(), slot = (v >>> 16) % size, id = v & 0xffff;
  if (cSlot[id] !== -1) return; // an ID in flight already: the client retries, as with a lost datagram
  cSlot[id] = slot; cPort[id] = rinfo.port; cAddr[id] = rinfo.address; cId[id] = msg.readUInt16BE(0);
  deadline[id] = Date.now() + TIMEOUT_MS;
  msg.writeUInt16BE(id, 0);
  pool[slot].send(msg);
});
setInterval(() => { // a lost reply frees its ID at its deadline
  const now = Date.now();
  for (let i = 0; i < 65536; i++) if (cSlot[i] !== -1 && deadline[i] < now) { cSlot[i] = -1; cAddr[i] = undefined; }
}, 500).unref();
let connected = 0;
for (const s of pool) s.connect(+uport, uhost, () => {
  if (++connected === size) down.bind(port, '127.0.0.1', () => console.log(`pool-relay on 127.0.0.1:${port}, ${size} sockets -> ${uhost}:${uport} pid ${process.pid}`));
});
