// The Node worker of zoo.core.node: one long-lived process that runs web runtimes (TF.js, onnxruntime-web)
// for the Python runners, behind a small framed protocol on stdin/stdout.
//
//   node node_worker.mjs NODE_MODULES_DIR
//
// A frame (both ways): an 8-byte header (uint32 LE: JSON length, uint32 LE: binary length), the JSON
// (UTF-8), then the binary payload. Requests are answered one at a time, in order:
//   {op: "hello"}                                        -> {ok, node, pid}
//   {op: "load", backend: FILE.mjs, options, parts: [n]} + bytes -> {ok, handle, info}
//   {op: "infer", handle, shape}  + float32 input        -> {ok, outputs: [{name, shape, bytes}]} + float32 outputs
//   {op: "bench", handle, shape, warmup, runs} + input   -> {ok, latencies_ms, cpu_ms, max_rss_kb}   (timed here: no pipe)
//   {op: "unload", handle}                               -> {ok}
// A failure is {ok: false, error: "one line"}. A backend is an ES module exporting
// `async load(ctx, options, parts) -> {info, batch, infer(Float32Array, shape) -> [{name, shape, data}], dispose()}`
// (batch: the model's fixed batch size, or null when it is free; a batch-1 model gets one image at a time);
// ctx.need(NAME) imports an npm package from NODE_MODULES_DIR only (never a path found elsewhere).
//
// Nothing but frames may reach stdout: console output and any library's writes to stdout go to stderr.
import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const rawWrite = process.stdout.write.bind(process.stdout);
const toErr = (...a) => { process.stderr.write(util.format(...a) + '\n'); };
console.log = console.info = console.debug = console.warn = console.error = console.trace = toErr;
process.stdout.write = (chunk, enc, cb) => process.stderr.write(chunk, enc, cb);

const MODULES = process.argv[2];
if (!MODULES || !fs.existsSync(MODULES)) {
  toErr(`node worker: no node_modules folder at ${MODULES}`);
  process.exit(3);
}
const ROOT = fs.realpathSync(MODULES);
const require = createRequire(path.join(ROOT, 'zoo-node-worker.cjs'));
function resolve(name) {
  const found = fs.realpathSync(require.resolve(name));
  if (!found.startsWith(ROOT + path.sep)) throw new Error(`${name} resolved outside ${ROOT}: ${found}`);
  return found;
}
const ctx = {
  modules: ROOT,
  async need(name) { return import(pathToFileURL(resolve(name)).href); },
  resolve,
  packageDir(name) {
    const dir = path.join(ROOT, ...name.split('/'));
    if (!fs.existsSync(path.join(dir, 'package.json'))) throw new Error(`npm package ${name} is not in ${ROOT}`);
    return dir;
  },
};

const handles = new Map();
let nextHandle = 1;

function send(msg, payload) {
  const json = Buffer.from(JSON.stringify(msg), 'utf8');
  const bin = payload ? Buffer.concat(payload.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))) : Buffer.alloc(0);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(json.length, 0);
  head.writeUInt32LE(bin.length, 4);
  rawWrite(Buffer.concat([head, json, bin]));
}

function oneLine(e) {
  const text = (e && e.message) ? e.message : String(e);
  return text.split('\n').map((s) => s.trim()).filter(Boolean)[0]?.slice(0, 300) || 'unknown error';
}

function floats(bin, shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  if (bin.length !== 4 * n) throw new Error(`input of shape [${shape}] needs ${4 * n} bytes, got ${bin.length}`);
  const copy = new Uint8Array(bin.length);
  copy.set(bin);
  return new Float32Array(copy.buffer);
}

function get(h) {
  const m = handles.get(h);
  if (!m) throw new Error(`no loaded model ${h}`);
  return m;
}

// a model of batch 1 (model.batch === 1) runs a batch one image at a time, the outputs concatenated
async function run(model, x, shape) {
  if (model.batch !== 1 || shape[0] <= 1) return model.infer(x, shape);
  const one = [1, ...shape.slice(1)];
  const per = x.length / shape[0];
  const parts = [];
  for (let i = 0; i < shape[0]; i++) parts.push(await model.infer(x.subarray(i * per, (i + 1) * per), one));
  return parts[0].map((o, j) => {
    const data = new Float32Array(parts.reduce((n, p) => n + p[j].data.length, 0));
    let at = 0;
    for (const p of parts) { data.set(p[j].data, at); at += p[j].data.length; }
    return { name: o.name, shape: [shape[0], ...o.shape.slice(1)], data };
  });
}

async function handle(req, bin) {
  switch (req.op) {
    case 'hello':
      return [{ ok: true, node: process.version, pid: process.pid }];
    case 'load': {
      const parts = [];
      let at = 0;
      for (const n of req.parts || []) {
        if (at + n > bin.length) throw new Error('load: the parts exceed the payload');
        parts.push(bin.subarray(at, at + n));
        at += n;
      }
      const backend = await import(pathToFileURL(req.backend).href);
      const model = await backend.load(ctx, req.options || {}, parts);
      const h = nextHandle++;
      handles.set(h, model);
      return [{ ok: true, handle: h, info: model.info || {} }];
    }
    case 'infer': {
      const outs = await run(get(req.handle), floats(bin, req.shape), req.shape);
      return [{ ok: true, outputs: outs.map((o) => ({ name: o.name, shape: o.shape, bytes: o.data.byteLength })) },
        outs.map((o) => o.data)];
    }
    case 'bench': {
      const m = get(req.handle);
      const x = floats(bin, req.shape);
      for (let i = 0; i < req.warmup; i++) await run(m, x, req.shape);
      const lat = [], cpu = [];
      for (let i = 0; i < req.runs; i++) {
        const c = process.cpuUsage();
        const t = process.hrtime.bigint();
        await run(m, x, req.shape);
        lat.push(Number(process.hrtime.bigint() - t) / 1e6);
        const d = process.cpuUsage(c); // this process's CPU time (every thread), microseconds
        cpu.push((d.user + d.system) / 1e3);
      }
      return [{ ok: true, latencies_ms: lat, cpu_ms: cpu, max_rss_kb: process.resourceUsage().maxRSS }];
    }
    case 'unload': {
      const m = handles.get(req.handle);
      handles.delete(req.handle);
      if (m && m.dispose) await m.dispose();
      return [{ ok: true }];
    }
    default:
      throw new Error(`unknown request ${JSON.stringify(req.op)}`);
  }
}

let buf = Buffer.alloc(0);
let busy = Promise.resolve();

function pump() {
  while (buf.length >= 8) {
    const jl = buf.readUInt32LE(0);
    const bl = buf.readUInt32LE(4);
    if (buf.length < 8 + jl + bl) return;
    const json = buf.subarray(8, 8 + jl).toString('utf8');
    const bin = Buffer.from(buf.subarray(8 + jl, 8 + jl + bl));
    buf = buf.subarray(8 + jl + bl);
    busy = busy.then(async () => {
      let req;
      try {
        req = JSON.parse(json);
      } catch (e) {
        send({ ok: false, error: `bad request: ${oneLine(e)}` });
        return;
      }
      try {
        const [msg, payload] = await handle(req, bin);
        send(msg, payload);
      } catch (e) {
        toErr(e && e.stack ? e.stack : String(e));
        send({ ok: false, error: oneLine(e) });
      }
    });
  }
}

process.stdin.on('data', (chunk) => { buf = Buffer.concat([buf, chunk]); pump(); });
process.stdin.on('end', () => { busy.then(() => process.exit(0)); });
process.on('unhandledRejection', (e) => { toErr('unhandled rejection:', e); });
