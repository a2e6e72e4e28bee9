'use strict';
// Sends N badge pushes with @parse/node-apn (token auth, p8 key) to the fake APNs given by --url.
// Pointed at the fake with node-apn's documented `address` and `port` options (http2.connect takes the
// host:port from the address URL, the TLS socket the port from the options, so both carry it), and `ca`
// makes it trust the fake's self-signed certificate.
const apn = require('@parse/node-apn');
const { parseArgs, token, warmupToken, report, version } = require('./common');

async function main() {
  const a = parseArgs(process.argv);
  const provider = new apn.Provider({
    token: { key: a.key, keyId: a.keyId, teamId: a.team },
    production: true,
    address: `${a.host}:${a.port}`,
    port: a.port, // tls.connect takes the port from the options, which node-apn passes through
    ca: a.ca,
    clientCount: a.clients,
    requestTimeout: 30000,
  });
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const note = new apn.Notification();
  note.topic = a.topic;
  note.pushType = 'alert';
  note.priority = 10;
  note.expiry = expiry;
  note.badge = 1;

  // Warm up: connect and sign the provider token before the clock starts, then --warmup untimed sends
  // (every sender of `herald bench dispatch --peers` gets the same warm-up).
  await provider.send(note, [token(0xfffffff)]);
  const chunk = Math.max(1, a.concurrency);
  for (let i = 0; i < a.warmup; i += chunk) {
    const tokens = [];
    for (let j = i; j < Math.min(a.warmup, i + chunk); j++) tokens.push(warmupToken(j));
    await provider.send(note, tokens);
  }

  let sent = 0;
  let failed = 0;
  let firstError;
  const started = process.hrtime.bigint();
  for (let i = 0; i < a.count; i += chunk) {
    const tokens = [];
    for (let j = i; j < Math.min(a.count, i + chunk); j++) tokens.push(token(j));
    const result = await provider.send(note, tokens);
    sent += result.sent.length;
    failed += result.failed.length;
    if (!firstError && result.failed.length > 0) {
      firstError = JSON.stringify(result.failed[0].response ?? String(result.failed[0].error));
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  report('@parse/node-apn', version('@parse/node-apn'), sent, failed, seconds, firstError);
  await provider.shutdown();
}

main().catch(error => {
  process.stderr.write(`node-apn peer: ${error.stack || error}\n`);
  process.exit(1);
});
