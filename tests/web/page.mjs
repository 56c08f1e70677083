// The browser test's page: every web artifact of /job.json run with web/ultraface.js on the photos, the
// detections POSTed to /result (tests/web/test_browser.py compares them with the Node worker's).
import { load } from '/zoo/web/ultraface.js';

async function post(body) {
  await fetch('/result', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

try {
  const job = await (await fetch(new URLSearchParams(location.search).get('job'))).json();
  tf.wasm.setWasmPaths('/node_modules/@tensorflow/tfjs-backend-wasm/dist/');
  ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
  ort.env.wasm.numThreads = 1;
  const results = [];
  for (const item of job.items) {
    let det;
    if (item.runtime.startsWith('tfjs-')) {
      if (!(await tf.setBackend(item.runtime.slice(5)))) throw new Error(`no TF.js backend ${item.runtime}`);
      await tf.ready();
      det = await load(item.url, { tf });
    } else {
      det = await load(item.url, { ort });
    }
    const photos = [];
    for (const url of job.photos) {
      const blob = await (await fetch(url)).blob();
      photos.push({ photo: url, faces: await det.detect(blob) });
    }
    results.push({ ...item, used: det.runtime, photos });
    det.dispose();
  }
  await post({ ok: true, userAgent: navigator.userAgent, results });
} catch (e) {
  await post({ ok: false, error: String((e && e.stack) || e) });
}
