// onnxruntime-web (its WebAssembly build) as a backend of the Node worker (zoo/core/node_worker.mjs), the
// `ort-web` runtime of the onnx target. parts: [the .onnx bytes]; options: {threads}.
let configured = false;

export async function load(ctx, options, parts) {
  const ort = await ctx.need('onnxruntime-web');
  if (!configured) {
    ort.env.wasm.wasmPaths = ctx.packageDir('onnxruntime-web') + '/dist/';
    ort.env.wasm.numThreads = options.threads || 1;
    ort.env.logLevel = 'error';
    configured = true;
  }
  if (parts.length !== 1) throw new Error('expected one ONNX file');
  const session = await ort.InferenceSession.create(parts[0], {
    executionProviders: ['wasm'], graphOptimizationLevel: 'all', logSeverityLevel: 3,
  });
  const input = session.inputNames[0];
  const dims = (session.inputMetadata && session.inputMetadata[0] && session.inputMetadata[0].shape) || [];
  return {
    batch: typeof dims[0] === 'number' && dims[0] > 0 ? dims[0] : null,
    info: { inputs: session.inputNames, outputs: session.outputNames, ort: ort.env.versions?.web },
    async infer(x, shape) {
      const feeds = { [input]: new ort.Tensor('float32', x, shape) };
      const out = await session.run(feeds);
      return session.outputNames.map((name) => {
        const t = out[name];
        const data = t.type === 'float32' ? t.data : Float32Array.from(t.data, Number);
        const r = { name, shape: Array.from(t.dims), data };
        return r;
      });
    },
    async dispose() { await session.release(); },
  };
}
