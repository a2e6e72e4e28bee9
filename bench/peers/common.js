'use strict';
// Shared by the peer senders: arguments, the device tokens and the result line that
// `herald bench dispatch --peers` parses. Tokens match the ones Herald's bench enqueues.
const fs = require('node:fs');

function parseArgs(argv) {
  const args = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`usage: --url https://127.0.0.1:PORT --count N --ca cert.pem --key key.p8 --key-id ID --team TEAM --topic TOPIC [--concurrency C] [--clients K] [--warmup W]`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ['url', 'count', 'ca', 'key', 'key-id', 'team', 'topic']) {
    if (!args[required]) throw new Error(`missing --${required}`);
  }
  const url = new URL(args.url);
  return {
    host: url.hostname,
    port: Number(url.port || 443),
    count: Number(args.count),
    ca: fs.readFileSync(args.ca, 'utf8'),
    key: fs.readFileSync(args.key, 'utf8'),
    keyId: args['key-id'],
    team: args.team,
    topic: args.topic,
    concurrency: Number(args.concurrency || 1000),
    clients: Number(args.clients || 1),
    warmup: Number(args.warmup || 0),
  };
}

const suffix = '0123456789abcdef0123456789abcdef0123456789abcdef01234567';
function token(i) {
  return i.toString(16).padStart(8, '0') + suffix;
}

// Warm-up sends go to tokens of their own (0x10000000 and up), never to the measured ones.
function warmupToken(i) {
  return token(0x10000000 + i);
}

function report(sender, version, sent, failed, seconds, firstError) {
  const line = { sender, version, sent, failed, seconds, rate: sent / seconds, firstError: firstError ?? null };
  process.stdout.write(JSON.stringify(line) + '\n');
}

function version(name) {
  const path = require('node:path');
  return JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules', name, 'package.json'), 'utf8')).version;
}

module.exports = { parseArgs, token, warmupToken, report, version };
