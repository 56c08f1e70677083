// Loaded by every Node process of an audited test run (NODE_OPTIONS=--require this file), like sitecustomize.py is
// by every Python one: records and blocks network connections, DNS look-ups, fetch and child processes that run
// npm/pip, writing each to $ZOO_NONET_LOG.
'use strict';
const fs = require('fs');
const LOG = process.env.ZOO_NONET_LOG;
function block(what) {
  if (LOG) fs.appendFileSync(LOG, `${process.pid} node ${what}\n`);
  throw new Error(`blocked by the no-network test: ${what}`);
}
if (LOG) {
  const net = require('net');
  const origConnect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    const o = args[0];
    if (o && typeof o === 'object' && o.path) return origConnect.apply(this, args); // a local socket (IPC)
    block(`socket.connect ${JSON.stringify(args[0]).slice(0, 120)}`);
  };
  const dns = require('dns');
  for (const k of ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveAny']) dns[k] = () => block(`dns.${k}`);
  for (const k of ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveAny']) dns.promises[k] = () => block(`dns.promises.${k}`);
  globalThis.fetch = async (url) => block(`fetch ${String(url && url.url ? url.url : url).slice(0, 120)}`);
  const cp = require('child_process');
  for (const k of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
    const orig = cp[k];
    cp[k] = function (cmd, ...rest) {
      const text = [cmd, ...(Array.isArray(rest[0]) ? rest[0] : [])].join(' ');
      if (/(^|[\/\s])(npm|npx|pip[0-9.]*)(\s|$)/.test(text)) block(`child_process.${k} ${text.slice(0, 120)}`);
      return orig.call(this, cmd, ...rest);
    };
  }
}
