// The TF.js runtimes of the tfjs target (tfjs-wasm, tfjs-cpu) as a backend of the Node worker
// (zoo/core/node_worker.mjs). parts: [model.json bytes, weight shard bytes]; options: {backend, threads}.
// The graph model is read from memory (tf.io.fromMemory): no file server, no network.
const TFJS = '@tensorflow/tfjs-core';

let wasmReady = null;

async function useBackend(ctx, tf, name, threads) {
  if (name === 'wasm') {
    if (!wasmReady) {
      wasmReady = (async () => {
        const wasm = await ctx.need('@tensorflow/tfjs-backend-wasm');
        wasm.setWasmPaths(ctx.packageDir('@tensorflow/tfjs-backend-wasm') + '/dist/');
        // one thread: the simd build without threads (no worker threads to start, the same arithmetic)
        if (threads <= 1) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
        else wasm.setThreadsCount(threads);
        return wasm;
      })();
    }
    await wasmReady;
  } else if (name !== 'cpu') {
    throw new Error(`unknown TF.js backend ${JSON.stringify(name)}`);
  }
  if (tf.getBackend() !== name) {
    if (!(await tf.setBackend(name))) throw new Error(`the TF.js ${name} backend did not start`);
  }
  await tf.ready();
}

export async function load(ctx, options, parts) {
  const tf = await ctx.need(TFJS);
  await ctx.need('@tensorflow/tfjs-backend-cpu');
  const tfc = await ctx.need('@tensorflow/tfjs-converter');
  const backend = options.backend;
  await useBackend(ctx, tf, backend, options.threads || 1);
  if (parts.length !== 2) throw new Error('expected model.json and its weight shard');
  let doc;
  try {
    doc = JSON.parse(Buffer.from(parts[0]).toString('utf8'));
  } catch (e) {
    throw new Error(`model.json is not valid JSON (${e.message})`);
  }
  const manifest = doc.weightsManifest;
  if (!doc.modelTopology || !Array.isArray(manifest) || manifest.length !== 1) {
    throw new Error('model.json is not a TF.js graph model with one weight group');
  }
  const w = parts[1];
  const weightData = w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength);
  const model = await tfc.loadGraphModel(tf.io.fromMemory({
    modelTopology: doc.modelTopology, weightSpecs: manifest[0].weights, weightData, format: doc.format,
    generatedBy: doc.generatedBy, convertedBy: doc.convertedBy, signature: doc.signature,
    userDefinedMetadata: doc.userDefinedMetadata,
  }));
  const names = ['scores', 'boxes'];
  const dims = model.inputs[0].shape || [];
  return {
    info: { backend: tf.getBackend(), tfjs: tf.version_core },
    batch: dims[0] > 0 ? dims[0] : null,
    async infer(x, shape) {
      await useBackend(ctx, tf, backend, options.threads || 1);
      const input = tf.tensor(x, shape, 'float32');
      let outs;
      try {
        outs = model.execute({ input }, names);
      } finally {
        input.dispose();
      }
      const res = [];
      for (let i = 0; i < names.length; i++) {
        res.push({ name: names[i], shape: outs[i].shape, data: await outs[i].data() });
        outs[i].dispose();
      }
      return res;
    },
    dispose() { model.dispose(); },
  };
}
