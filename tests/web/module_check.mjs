// Runs web/ultraface.js's functions on what tests/web/test_web_module.py prepared (node module_check.mjs JOB OUT):
// the pre-processing of raw RGB photos, the priors of some sizes, decoding and post-processing of model outputs,
// and the ONNX metadata reader. Float32 results are written as raw files beside OUT; the rest as JSON in OUT.
import fs from 'node:fs';
import { decode, generatePriors, onnxMetadata, postprocess, preprocess } from '../../zoo/web/ultraface.js';

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const outDir = process.argv[3];
const f32 = (p) => { const b = fs.readFileSync(p); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
const save = (name, a) => { fs.writeFileSync(`${outDir}/${name}`, Buffer.from(a.buffer, a.byteOffset, a.byteLength)); return name; };
const res = { inputs: [], priors: [], detections: [], onnx: null };
const [w, h] = job.size;
job.images.forEach((im, i) => {
  const px = { data: new Uint8Array(fs.readFileSync(im.rgb)), width: im.width, height: im.height, channels: 3 };
  res.inputs.push({ nchw: save(`in${i}.nchw`, preprocess(px, w, h, { layout: 'NCHW' })),
    nhwc: save(`in${i}.nhwc`, preprocess(px, w, h, { layout: 'NHWC' })) });
});
for (const [pw, ph] of job.prior_sizes) res.priors.push(save(`priors-${pw}x${ph}`, generatePriors(pw, ph)));
const k = job.classes;
const scores = f32(job.scores), locs = f32(job.locations);
const per = scores.length / job.images.length / k;
const priors = generatePriors(w, h);
job.images.forEach((im, i) => {
  const boxes = decode(locs.subarray(i * per * 4, (i + 1) * per * 4), priors);
  save(`boxes${i}`, boxes);
  res.detections.push(postprocess(scores.subarray(i * per * k, (i + 1) * per * k), boxes, k, im.width, im.height,
    job.labels, { candidateSize: job.candidate_size }));
});
if (job.onnx) res.onnx = onnxMetadata(fs.readFileSync(job.onnx));
fs.writeFileSync(`${outDir}/result.json`, JSON.stringify(res));
