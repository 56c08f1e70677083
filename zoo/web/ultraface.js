// ultraface.js: run an ultraface-zoo web artifact in a page (or in Node) and get faces in image pixels.
//
//   import { load } from './ultraface.js';
//   const det = await load('rfb-320-decoded-fp32.model.json', { tf });      // TF.js graph model (tfjs target)
//   const det = await load('rfb-320-decoded-fp32.onnx', { ort });           // ONNX file in onnxruntime-web
//   const faces = await det.detect(imageElement);   // [{box: [x1, y1, x2, y2], score, label}], image pixels
//
// The runtime library is passed in (`tf`: @tensorflow/tfjs with the backend you chose set; `ort`:
// onnxruntime-web), so this file imports nothing and works with script tags, import maps or bundlers.
// The artifact describes itself: a model.json carries our metadata in `userDefinedMetadata.ultraface_zoo`,
// an .onnx file in its `metadata_props` ("zoo.meta"). What it does is what ultraface-zoo's Python does:
//   pre-processing  the whole image resized to the network size with OpenCV's bilinear arithmetic (its
//                   fixed-point INTER_LINEAR, and the 2x2 average for an exact halving), RGB, (x - 127) / 128;
//   raw head        decoded with the priors of the input size (centre variance 0.1, size variance 0.2);
//   post-processing per class: score > threshold (0.7), the best `candidateSize` (200), hard NMS at IoU 0.3,
//                   boxes scaled to the image; sorted by score.
// The decoded head (the default of the web artifacts) needs no priors in the page.

const MIN_BOXES = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]];
const STRIDES = [8, 16, 32, 64];
const f32 = Math.fround;

// ------------------------------------------------------------------------ pre-processing

function roundHalfEven(v) {
  const r = Math.round(v);
  return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/** OpenCV's cv2.resize(src, (dw, dh)) of an 8-bit image with `cn` interleaved channels (INTER_LINEAR). */
export function resizeBilinear(src, sw, sh, cn, dw, dh) {
  const dst = new Uint8Array(dw * dh * cn);
  if (sw === dw && sh === dh) { dst.set(src.subarray(0, dw * dh * cn)); return dst; }
  const scaleX = 1 / (dw / sw), scaleY = 1 / (dh / sh); // scale_x, scale_y as OpenCV computes them
  if (scaleX === 2 && scaleY === 2) { // OpenCV: an exact halving is INTER_AREA's fast 2x2 average
    for (let y = 0; y < dh; y++) {
      const r0 = 2 * y * sw * cn, r1 = r0 + sw * cn;
      for (let x = 0; x < dw; x++) {
        for (let c = 0; c < cn; c++) {
          const i = 2 * x * cn + c;
          dst[(y * dw + x) * cn + c] = (src[r0 + i] + src[r0 + i + cn] + src[r1 + i] + src[r1 + i + cn] + 2) >> 2;
        }
      }
    }
    return dst;
  }
  const ONE = 2048; // INTER_RESIZE_COEF_SCALE
  const coef = (dsize, ssize, scale) => {
    const ofs = new Int32Array(dsize), a = new Int16Array(dsize * 2);
    let lim = dsize; // the first index whose second tap falls outside: S[sx] * ONE from there on
    for (let d = 0; d < dsize; d++) {
      let fx = f32((d + 0.5) * scale - 0.5);
      let sx = Math.floor(fx);
      fx = f32(fx - sx);
      if (sx < 0) { fx = 0; sx = 0; }
      if (sx + 1 >= ssize) {
        lim = Math.min(lim, d);
        if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
      }
      ofs[d] = sx;
      a[2 * d] = roundHalfEven(f32(1 - fx) * ONE);
      a[2 * d + 1] = roundHalfEven(fx * ONE);
    }
    return { ofs, a, lim };
  };
  const X = coef(dw, sw, scaleX);
  const Y = { ofs: new Int32Array(dh), a: new Int16Array(dh * 2) }; // rows: no clamping, the row index is clipped
  for (let d = 0; d < dh; d++) {
    let fy = f32((d + 0.5) * scaleY - 0.5);
    const sy = Math.floor(fy);
    fy = f32(fy - sy);
    Y.ofs[d] = sy;
    Y.a[2 * d] = roundHalfEven(f32(1 - fy) * ONE);
    Y.a[2 * d + 1] = roundHalfEven(fy * ONE);
  }
  const clipRow = (r) => (r < 0 ? 0 : r >= sh ? sh - 1 : r);
  const rowCache = new Map();
  const hrow = (sy) => { // one source row resized horizontally, fixed point (x ONE)
    let r = rowCache.get(sy);
    if (r) return r;
    r = new Int32Array(dw * cn);
    const base = sy * sw * cn;
    for (let x = 0; x < dw; x++) {
      const sx = X.ofs[x] * cn;
      for (let c = 0; c < cn; c++) {
        r[x * cn + c] = x < X.lim
          ? src[base + sx + c] * X.a[2 * x] + src[base + sx + cn + c] * X.a[2 * x + 1]
          : src[base + sx + c] * ONE;
      }
    }
    if (rowCache.size > 4) rowCache.delete(rowCache.keys().next().value);
    rowCache.set(sy, r);
    return r;
  };
  for (let y = 0; y < dh; y++) {
    const sy = Y.ofs[y];
    const s0 = hrow(clipRow(sy)), s1 = hrow(clipRow(sy + 1));
    const b0 = Y.a[2 * y], b1 = Y.a[2 * y + 1];
    const out = y * dw * cn;
    for (let i = 0; i < dw * cn; i++) {
      // OpenCV's SIMD vertical pass: (mulhi(S0 >> 4, b0) + mulhi(S1 >> 4, b1) + 2) >> 2, saturated to 0..255
      const v = ((Math.floor(((s0[i] >> 4) * b0) / 65536) + Math.floor(((s1[i] >> 4) * b1) / 65536) + 2) >> 2);
      dst[out + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return dst;
}

/** Pixels {data: RGBA (canvas ImageData) or RGB bytes, width, height, channels?} -> the network input,
 *  Float32Array in `layout` ("NHWC" for tfjs, "NCHW" for ONNX), (RGB - mean) / std at width x height. */
export function preprocess(pixels, width, height, { layout = 'NCHW', mean = 127, std = 128 } = {}) {
  const cn = pixels.channels || (pixels.data.length === pixels.width * pixels.height * 3 ? 3 : 4);
  const src = pixels.data instanceof Uint8Array ? pixels.data : new Uint8Array(pixels.data.buffer, pixels.data.byteOffset, pixels.data.byteLength);
  const rgb = new Uint8Array(pixels.width * pixels.height * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += cn) { rgb[i] = src[j]; rgb[i + 1] = src[j + 1]; rgb[i + 2] = src[j + 2]; }
  const r = resizeBilinear(rgb, pixels.width, pixels.height, 3, width, height);
  const out = new Float32Array(width * height * 3);
  const plane = width * height;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = (r[p * 3 + c] - mean) / std;
      if (layout === 'NHWC') out[p * 3 + c] = v; else out[c * plane + p] = v;
    }
  }
  return out;
}

/** An image element, bitmap, canvas, blob or ImageData -> {data: RGBA, width, height} (browser). The image's
 *  own pixels: no colour-space conversion, no premultiplication, drawn at its own size. */
export async function imagePixels(source) {
  if (source && source.data && source.width && source.height) return source;
  const bmp = await createImageBitmap(source, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(bmp.width, bmp.height)
    : Object.assign(document.createElement('canvas'), { width: bmp.width, height: bmp.height });
  const g = canvas.getContext('2d', { willReadFrequently: true });
  g.drawImage(bmp, 0, 0);
  const img = g.getImageData(0, 0, bmp.width, bmp.height);
  bmp.close?.();
  return { data: img.data, width: img.width, height: img.height, channels: 4 };
}

// ------------------------------------------------------------------------ priors, decoding, NMS

/** Priors of an input size: Float32Array of P x (cx, cy, w, h), the order of ultraface-zoo's generate_priors. */
export function generatePriors(width, height) {
  const rows = [];
  STRIDES.forEach((s, l) => {
    const fw = Math.ceil(width / s), fh = Math.ceil(height / s);
    for (let y = 0; y < fh; y++) for (let x = 0; x < fw; x++) {
      for (const m of MIN_BOXES[l]) rows.push((x + 0.5) / fw, (y + 0.5) / fh, m / width, m / height);
    }
  });
  return Float32Array.from(rows, (v) => Math.min(1, Math.max(0, v)));
}

/** Raw offsets (P x 4) + priors -> corner boxes (P x 4), in float32 arithmetic like the NumPy decoder. */
export function decode(loc, priors, [cv, sv] = [0.1, 0.2]) {
  const out = new Float32Array(loc.length);
  const c = f32(cv), s = f32(sv);
  for (let i = 0; i < loc.length; i += 4) {
    const cx = f32(f32(f32(loc[i] * c) * priors[i + 2]) + priors[i]);
    const cy = f32(f32(f32(loc[i + 1] * c) * priors[i + 3]) + priors[i + 1]);
    const w = f32(f32(Math.exp(f32(loc[i + 2] * s))) * priors[i + 2]);
    const h = f32(f32(Math.exp(f32(loc[i + 3] * s))) * priors[i + 3]);
    out[i] = f32(cx - f32(w / 2)); out[i + 1] = f32(cy - f32(h / 2));
    out[i + 2] = f32(cx + f32(w / 2)); out[i + 3] = f32(cy + f32(h / 2));
  }
  return out;
}

function iou(b, i, j) { // float32, with the 1e-5 of the NumPy NMS
  const x1 = Math.max(b[4 * i], b[4 * j]), y1 = Math.max(b[4 * i + 1], b[4 * j + 1]);
  const x2 = Math.min(b[4 * i + 2], b[4 * j + 2]), y2 = Math.min(b[4 * i + 3], b[4 * j + 3]);
  const inter = f32(Math.max(0, f32(x2 - x1)) * Math.max(0, f32(y2 - y1)));
  const area = (k) => f32(Math.max(0, f32(b[4 * k + 2] - b[4 * k])) * Math.max(0, f32(b[4 * k + 3] - b[4 * k + 1])));
  return f32(inter / f32(f32(f32(area(i) + area(j)) - inter) + f32(1e-5)));
}

/** Scores (P x K) and corner boxes (P x 4, normalised) of one image -> detections in image pixels. */
export function postprocess(scores, boxes, k, imageWidth, imageHeight, labels,
  { scoreThreshold = 0.7, iouThreshold = 0.3, candidateSize = 200, topK = -1 } = {}) {
  const p = boxes.length / 4;
  const out = [];
  for (let cls = 1; cls < k; cls++) {
    const idx = [];
    for (let i = 0; i < p; i++) if (scores[i * k + cls] > f32(scoreThreshold)) idx.push(i);
    if (!idx.length) continue;
    const sub = new Float32Array(idx.length * 4);
    idx.forEach((i, n) => sub.set(boxes.subarray(4 * i, 4 * i + 4), 4 * n));
    const sc = idx.map((i) => scores[i * k + cls]);
    let order = sc.map((_, n) => n).sort((a, b) => (sc[b] - sc[a]) || (a - b)).slice(0, candidateSize);
    const keep = [];
    while (order.length) {
      const i = order[0];
      keep.push(i);
      if (topK > 0 && keep.length === topK) break;
      order = order.slice(1).filter((j) => iou(sub, i, j) <= f32(iouThreshold));
    }
    const label = labels && cls < labels.length ? labels[cls] : String(cls);
    for (const i of keep) {
      out.push({ box: [sub[4 * i] * imageWidth, sub[4 * i + 1] * imageHeight, sub[4 * i + 2] * imageWidth, sub[4 * i + 3] * imageHeight],
        score: sc[i], label, classId: cls });
    }
  }
  out.sort((a, b) => b.score - a.score);
  return topK > 0 ? out.slice(0, topK) : out;
}

// ------------------------------------------------------------------------ reading the artifacts

/** The metadata_props of an ONNX file (its bytes), as {key: value}: a minimal protobuf reader. */
export function onnxMetadata(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let pos = 0;
  const varint = (end) => {
    let v = 0, mul = 1;
    for (;;) {
      if (pos >= end) throw new Error('truncated ONNX file');
      const c = b[pos++];
      v += (c & 0x7f) * mul;
      if (c < 0x80) return v;
      mul *= 128;
      if (mul > 2 ** 63) throw new Error('bad varint in the ONNX file');
    }
  };
  const skip = (wire, end) => {
    if (wire === 0) varint(end);
    else if (wire === 1) pos += 8;
    else if (wire === 2) { const n = varint(end); pos += n; } // (not `pos += varint()`: that reads pos first)
    else if (wire === 5) pos += 4;
    else throw new Error(`not an ONNX file (wire type ${wire})`);
    if (pos > end) throw new Error('truncated ONNX file');
  };
  const text = (end) => { const n = varint(end); const s = new TextDecoder().decode(b.subarray(pos, pos + n)); pos += n; return s; };
  const props = {};
  const end = b.length;
  while (pos < end) {
    const key = varint(end), field = Math.floor(key / 8), wire = key & 7;
    if (field === 14 && wire === 2) { // ModelProto.metadata_props: StringStringEntryProto {key = 1, value = 2}
      const n = varint(end), stop = pos + n;
      let k = '', v = '';
      while (pos < stop) {
        const kk = varint(stop);
        if ((kk >> 3) === 1 && (kk & 7) === 2) k = text(stop);
        else if ((kk >> 3) === 2 && (kk & 7) === 2) v = text(stop);
        else skip(kk & 7, stop);
      }
      props[k] = v;
    } else {
      skip(wire, end);
    }
  }
  return props;
}

async function fetchBytes(fetchFn, url) {
  const r = await fetchFn(url);
  if (!r.ok) throw new Error(`cannot fetch ${url}: ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

function checkMeta(meta, where) {
  if (!meta || !Array.isArray(meta.input_size) || !Array.isArray(meta.labels) || !meta.head) {
    throw new Error(`${where} carries no ultraface-zoo metadata`);
  }
  if (meta.head !== 'decoded' && meta.head !== 'raw') throw new Error(`${where}: head ${meta.head} is not decoded or raw`);
  return meta;
}

/** A detector for one artifact: a TF.js model.json (give `tf`) or an .onnx file (give `ort`).
 *  `url`: where the page fetches it (a model.json's shard is fetched beside it); `fetch`: another fetch. */
export async function load(url, { tf, ort, fetch: fetchFn = globalThis.fetch, sessionOptions } = {}) {
  const name = String(url);
  if (/\.onnx(\?|$)/i.test(name)) {
    if (!ort) throw new Error('an ONNX artifact needs onnxruntime-web: load(url, { ort })');
    const bytes = await fetchBytes(fetchFn, url);
    const props = onnxMetadata(bytes);
    if (!props['zoo.meta']) throw new Error(`${name} carries no ultraface-zoo metadata`);
    const meta = checkMeta(JSON.parse(props['zoo.meta']), name);
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], ...sessionOptions });
    return new Detector(meta, 'ort-web', async (x, shape) => {
      const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, shape) });
      const byName = {};
      for (const n of session.outputNames) byName[n] = out[n].data;
      return byName;
    }, () => session.release());
  }
  if (!tf) throw new Error('a TF.js model.json needs TF.js: load(url, { tf })');
  const doc = JSON.parse(new TextDecoder().decode(await fetchBytes(fetchFn, url)));
  const manifest = doc.weightsManifest;
  if (!Array.isArray(manifest) || manifest.length !== 1 || manifest[0].paths.length !== 1) {
    throw new Error(`${name} is not a TF.js graph model with one weight shard`);
  }
  const shardUrl = name.replace(/[^/]*$/, '') + manifest[0].paths[0];
  const shard = await fetchBytes(fetchFn, shardUrl);
  const meta = checkMeta((doc.userDefinedMetadata || {}).ultraface_zoo, name);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: doc.modelTopology, weightSpecs: manifest[0].weights, format: doc.format, signature: doc.signature,
    weightData: shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength),
    userDefinedMetadata: doc.userDefinedMetadata,
  }));
  return new Detector(meta, `tfjs-${tf.getBackend()}`, async (x, shape) => {
    const input = tf.tensor(x, shape, 'float32');
    try {
      const [s, b] = model.execute({ input }, ['scores', 'boxes']);
      const res = { scores: await s.data(), boxes: await b.data() };
      s.dispose(); b.dispose();
      return res;
    } finally {
      input.dispose();
    }
  }, () => model.dispose());
}

export class Detector {
  constructor(meta, runtime, run, dispose) {
    this.meta = meta;
    this.runtime = runtime;
    this.layout = meta.layout || 'NCHW';
    [this.width, this.height] = meta.input_size;
    this.labels = meta.labels;
    this._run = run;
    this._dispose = dispose;
    this._priors = null;
  }

  /** The network on one preprocessed input -> {scores: P x K, boxes: P x 4 corners (decoded)}. */
  async infer(x) {
    const shape = this.layout === 'NHWC' ? [1, this.height, this.width, 3] : [1, 3, this.height, this.width];
    const out = await this._run(x, shape);
    let { scores, boxes } = out;
    if (!scores || !boxes) throw new Error(`the model's outputs are ${Object.keys(out).join(', ')}: expected scores and boxes`);
    if (this.meta.head === 'raw') {
      this._priors ||= generatePriors(this.width, this.height);
      boxes = decode(boxes, this._priors, this.meta.variances);
    }
    return { scores, boxes };
  }

  /** Faces in `image` (an element, bitmap, blob, ImageData, or {data, width, height, channels}), in its pixels. */
  async detect(image, options = {}) {
    const px = await imagePixels(image);
    const x = preprocess(px, this.width, this.height, { layout: this.layout, mean: this.meta.mean, std: this.meta.std });
    const { scores, boxes } = await this.infer(x);
    return postprocess(scores, boxes, this.labels.length, px.width, px.height, this.labels, options);
  }

  dispose() { this._dispose?.(); }
}
