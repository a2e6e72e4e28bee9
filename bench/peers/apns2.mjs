// Sends N badge pushes with apns2 (token auth) to the fake APNs given by --url.
// apns2 always builds its undici Pool for https://<host>:443 and has no port or ca option, so after
// construction its pool is replaced by one with the same settings (32 connections, HTTP/2, 100 streams
// each) pointed at the fake's port and trusting its certificate. Everything else (JWT signing and
// reuse, headers, body, response handling) is apns2's own code.
import { createRequire } from 'node:module';
import { ApnsClient, Notification } from 'apns2';
import { Pool } from 'undici';

const require = createRequire(import.meta.url);
const { parseArgs, token, warmupToken, report, version } = require('./common.js');

const a = parseArgs(process.argv);
const client = new ApnsClient({ team: a.team, keyId: a.keyId, signingKey: a.key, defaultTopic: a.topic, host: a.host });
await client.client.close();
client.client = new Pool(`https://${a.host}:${a.port}`, {
  connections: 32,
  pipelining: 1,
  allowH2: true,
  maxConcurrentStreams: 100,
  connect: { ca: a.ca },
});

const expiration = Math.floor(Date.now() / 1000) + 3600;
const options = { type: 'alert', priority: 10, expiration, badge: 1 };
await client.send(new Notification(token(0xfffffff), options)); // warm up: connect and sign
const window = Math.max(1, a.concurrency);
for (let i = 0; i < a.warmup; i += window) { // then --warmup untimed sends, as every sender of the run gets
  const batch = [];
  for (let j = i; j < Math.min(a.warmup, i + window); j++) batch.push(new Notification(warmupToken(j), options));
  await client.sendMany(batch);
}

let sent = 0;
let failed = 0;
let firstError;
const started = process.hrtime.bigint();
for (let i = 0; i < a.count; i += window) {
  const batch = [];
  for (let j = i; j < Math.min(a.count, i + window); j++) batch.push(new Notification(token(j), options));
  const results = await client.sendMany(batch);
  for (const r of results) {
    if (r && r.error) {
      failed++;
      firstError ??= `${r.error.statusCode} ${r.error.reason}`;
    } else {
      sent++;
    }
  }
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
report('apns2', version('apns2'), sent, failed, seconds, firstError);
await client.close();
