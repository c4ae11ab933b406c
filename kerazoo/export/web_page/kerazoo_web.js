// The page of kerazoo's web export: runs model.onnx in onnxruntime-web (WebAssembly) on an image the user
// picks, and shows the mask over it, the restored image or the depth map. Everything loads from this folder.
import * as ort from "./ort/ort.wasm.bundle.min.mjs";

const $ = (id) => document.getElementById(id);
const DISPLAY_SIDE = 1024; // the longest side the views are drawn at
// What tests (and curious users) read: status, metadata and, after a run, the raw tensors.
const api = { status: "loading", metadata: null, result: null, error: null, runs: 0, run, toBase64 };
window.kerazoo = api;
let session = null;
let shown = null; // the last segmentation, redrawn when the opacity changes

function setStatus(status, message) {
  api.status = status;
  document.body.dataset.status = status;
  $("status").textContent = message;
}

function fail(error) {
  console.error(error);
  api.error = String(error && error.message ? error.message : error);
  setStatus("error", `Error: ${api.error}`);
}

// Counted in an attribute too, so that a test waits for the nth run with a CSS selector (the page's
// Content-Security-Policy forbids the eval that script-based waiting needs).
function finishRun() {
  api.runs += 1;
  document.body.dataset.runs = String(api.runs);
}

function describe(metadata) {
  const [, height, width, channels] = metadata.input.shape;
  const size = Number.isInteger(height) && Number.isInteger(width) ? `${width}×${height}`
    : metadata.trained_input_size ? `resized to ${metadata.trained_input_size[1]}×${metadata.trained_input_size[0]}`
      : "any size";
  const what = { segmentation: "segmentation", denoise: "denoising", depth: "depth",
                 super_resolution: `super-resolution ×${metadata.scale}` }[metadata.task] || metadata.task;
  const classes = metadata.class_names ? `; classes: ${metadata.class_names.join(", ")}` : "";
  return `${what}; ${channels === 1 ? "grey" : "RGB"} input, ${size}${classes}`;
}

async function load() {
  // Threads need SharedArrayBuffer, which needs a cross-origin isolated page (COOP/COEP headers).
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const response = await fetch("model.json");
  if (!response.ok) throw new Error(`model.json: HTTP ${response.status}`);
  const metadata = await response.json();
  api.metadata = metadata;
  session = await ort.InferenceSession.create(metadata.model_file, { executionProviders: ["wasm"] });
  document.title = `${metadata.model} (kerazoo)`;
  $("title").textContent = metadata.model;
  $("summary").textContent = describe(metadata);
  $("runtime").textContent = `${metadata.runtime.package} ${metadata.runtime.version}`;
  $("opacity-control").hidden = metadata.task !== "segmentation";
  $("image-input").disabled = false;
  setStatus("ready", "Pick an image.");
}

// The size the model runs at: the file's fixed size, else its training size, else the image's own size
// (scaled down when the output would pass metadata.max_pixels).
function modelSize(metadata, width, height) {
  const [, fixedHeight, fixedWidth] = metadata.input.shape;
  if (Number.isInteger(fixedHeight) && Number.isInteger(fixedWidth)) {
    return { width: fixedWidth, height: fixedHeight, note: "the file's input size" };
  }
  if (metadata.trained_input_size) {
    const [trainedHeight, trainedWidth] = metadata.trained_input_size;
    return { width: trainedWidth, height: trainedHeight, note: "the size it was trained at" };
  }
  const scale = metadata.scale || 1;
  const fit = Math.min(1, Math.sqrt(metadata.max_pixels / (width * height * scale * scale)));
  return { width: Math.max(1, Math.floor(width * fit)), height: Math.max(1, Math.floor(height * fit)),
           note: fit < 1 ? `scaled down from ${width}×${height} to bound the memory` : null };
}

function canvas(width, height) {
  const element = document.createElement("canvas");
  element.width = width;
  element.height = height;
  return element;
}

// The image's pixels exactly as decoded (RGBA), at its own size.
function imagePixels(bitmap) {
  const context = canvas(bitmap.width, bitmap.height).getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  return context.getImageData(0, 0, bitmap.width, bitmap.height).data;
}

// Raw 0..255 pixels, HWC (the model normalises them itself); grey as PIL's convert("L") computes it.
function channelValues(rgba, count, channels) {
  if (channels !== 1 && channels !== 3) {
    throw new Error(`the page feeds grey or RGB images; this model takes ${channels} channels`);
  }
  const values = new Float32Array(count * channels);
  for (let i = 0; i < count; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (channels === 1) {
      values[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    } else {
      values[3 * i] = r;
      values[3 * i + 1] = g;
      values[3 * i + 2] = b;
    }
  }
  return values;
}

// Resizing as kerazoo's training and model.segment() do (TensorFlow's bilinear resize with antialias): a
// triangle filter, widened by the shrink factor when shrinking, centred on each output pixel's centre; taps
// outside the image are left out and the weights renormalised.
function spans(inSize, outSize) {
  const scale = outSize / inSize;
  const radius = Math.max(1 / scale, 1);
  return Array.from({ length: outSize }, (_, o) => {
    const center = (o + 0.5) / scale;
    const first = Math.max(0, Math.ceil(center - radius - 0.5));
    const last = Math.min(inSize - 1, Math.floor(center + radius - 0.5));
    const weights = [];
    for (let i = first; i <= last; i++) weights.push(Math.max(0, 1 - Math.abs((i + 0.5 - center) / radius)));
    const total = weights.reduce((a, b) => a + b, 0);
    return { first, weights: weights.map((w) => w / total) };
  });
}

function resize(values, height, width, channels, outHeight, outWidth) {
  if (height === outHeight && width === outWidth) return values;
  const columns = spans(width, outWidth), rows = spans(height, outHeight);
  const across = new Float32Array(height * outWidth * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outWidth; x++) {
      const { first, weights } = columns[x];
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0; k < weights.length; k++) sum += weights[k] * values[(y * width + first + k) * channels + c];
        across[(y * outWidth + x) * channels + c] = sum;
      }
    }
  }
  const resized = new Float32Array(outHeight * outWidth * channels);
  for (let y = 0; y < outHeight; y++) {
    const { first, weights } = rows[y];
    for (let x = 0; x < outWidth; x++) {
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0; k < weights.length; k++) {
          sum += weights[k] * across[((first + k) * outWidth + x) * channels + c];
        }
        resized[(y * outWidth + x) * channels + c] = Math.min(255, Math.max(0, sum));
      }
    }
  }
  return resized;
}

function inputTensor(bitmap, size, metadata) {
  const channels = metadata.input.shape[3];
  const values = resize(channelValues(imagePixels(bitmap), bitmap.width * bitmap.height, channels),
                        bitmap.height, bitmap.width, channels, size.height, size.width);
  const data = metadata.input.dtype === "uint8" ? Uint8Array.from(values, Math.round) : values;
  return new ort.Tensor(metadata.input.dtype, data, [1, size.height, size.width, channels]);
}

async function run(blob) {
  if (!session) throw new Error("the model is not loaded yet");
  setStatus("running", "Running the model…");
  try {
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none",
                                                   imageOrientation: "from-image" });
    const metadata = api.metadata;
    const size = modelSize(metadata, bitmap.width, bitmap.height);
    const input = inputTensor(bitmap, size, metadata);
    const started = performance.now();
    const outputs = await session.run({ [session.inputNames[0]]: input });
    const millis = performance.now() - started;
    const output = outputs[session.outputNames[0]];
    api.result = { input: input.data, inputDims: input.dims, output: output.data, outputDims: output.dims,
                   outputType: output.type, millis };
    show(bitmap, output, metadata);
    const resized = size.width !== bitmap.width || size.height !== bitmap.height ? ` (${size.note})` : "";
    setStatus("done", `Ran at ${size.width}×${size.height}${resized} in ${millis.toFixed(0)} ms.`);
  } catch (error) {
    fail(error);
  }
  finishRun();
}

function displaySize(width, height) {
  const fit = Math.min(1, DISPLAY_SIDE / Math.max(width, height));
  return { width: Math.round(width * fit), height: Math.round(height * fit) };
}

function show(bitmap, output, metadata) {
  const shownSize = displaySize(bitmap.width, bitmap.height);
  const view = $("input-view");
  view.width = shownSize.width;
  view.height = shownSize.height;
  view.getContext("2d").drawImage(bitmap, 0, 0, shownSize.width, shownSize.height);
  $("input-caption").textContent = `Input, ${bitmap.width}×${bitmap.height}`;
  $("legend").replaceChildren();
  shown = null;
  if (metadata.task === "segmentation") {
    shown = { bitmap, size: shownSize, ...segmentation(output, metadata) };
    drawOverlay();
  } else if (metadata.task === "depth") {
    drawDepth(output, shownSize);
  } else {
    drawRestored(output);
  }
}

function palette(count, colors) {
  return Array.from({ length: count }, (_, i) => {
    if (colors && colors[i]) return colors[i];
    const hue = (i * 137.508) % 360; // golden angle: neighbouring classes get distant hues
    const f = (n) => {
      const k = (n + hue / 30) % 12;
      return Math.round(255 * (0.5 - 0.4 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [f(0), f(8), f(4)];
  });
}

// Labels per pixel: the argmax over classes, or for one channel foreground where the logit is positive
// (the probability above 0.5 after a sigmoid), as kerazoo's scores_to_labels.
function segmentation(output, metadata) {
  const [, height, width, channels = 1] = output.dims;
  const count = width * height;
  const labels = new Int32Array(count);
  const data = output.data;
  if (output.dims.length === 3) {
    for (let i = 0; i < count; i++) labels[i] = Number(data[i]);
  } else if (channels === 1) {
    const threshold = metadata.activation === "sigmoid" ? 0.5 : 0;
    for (let i = 0; i < count; i++) labels[i] = data[i] > threshold ? 1 : 0;
  } else {
    for (let i = 0; i < count; i++) {
      let best = 0;
      for (let c = 1; c < channels; c++) if (data[i * channels + c] > data[i * channels + best]) best = c;
      labels[i] = best;
    }
  }
  const classes = Math.max(metadata.class_names ? metadata.class_names.length : 0, channels === 1 ? 2 : channels);
  const colors = palette(classes, metadata.class_colors);
  const mask = new ImageData(width, height);
  const counts = new Array(classes).fill(0);
  for (let i = 0; i < count; i++) {
    const color = colors[labels[i]] || [0, 0, 0];
    mask.data.set([color[0], color[1], color[2], 255], 4 * i);
    counts[labels[i]] += 1;
  }
  const maskCanvas = canvas(width, height);
  maskCanvas.getContext("2d").putImageData(mask, 0, 0);
  const legend = counts.map((n, i) => ({ i, n })).filter((entry) => entry.n > 0).sort((a, b) => b.n - a.n);
  for (const { i, n } of legend) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${colors[i].join(",")})`;
    const name = metadata.class_names ? metadata.class_names[i] : `class ${i}`;
    item.append(swatch, `${name} ${(100 * n / count).toFixed(1)}%`);
    $("legend").append(item);
  }
  return { maskCanvas, maskSize: { width, height } };
}

function drawOverlay() {
  if (!shown) return;
  const view = $("output-view");
  view.width = shown.size.width;
  view.height = shown.size.height;
  const context = view.getContext("2d");
  context.drawImage(shown.bitmap, 0, 0, view.width, view.height);
  context.globalAlpha = Number($("opacity").value);
  context.imageSmoothingEnabled = false; // class borders stay sharp
  context.drawImage(shown.maskCanvas, 0, 0, view.width, view.height);
  $("output-caption").textContent = `Classes at ${shown.maskSize.width}×${shown.maskSize.height}, over the input`;
}

function drawRestored(output) {
  const [, height, width, channels] = output.dims;
  const image = new ImageData(width, height);
  const data = output.data;
  const byte = (value) => Math.min(255, Math.max(0, Math.round(value)));
  for (let i = 0; i < width * height; i++) {
    const r = byte(data[i * channels]);
    const g = channels === 1 ? r : byte(data[i * channels + 1]);
    const b = channels === 1 ? r : byte(data[i * channels + 2]);
    image.data.set([r, g, b, 255], 4 * i);
  }
  const view = $("output-view");
  view.width = width;
  view.height = height;
  view.getContext("2d").putImageData(image, 0, 0);
  $("output-caption").textContent = `Restored, ${width}×${height}`;
}

// Depth in metres, near (small) in yellow to far (large) in dark blue.
const DEPTH_STOPS = [[253, 231, 37], [94, 201, 98], [33, 145, 140], [59, 82, 139], [68, 1, 84]];

function drawDepth(output, size) {
  const [, height, width] = output.dims;
  const data = output.data;
  let low = Infinity, high = -Infinity;
  for (const value of data) { low = Math.min(low, value); high = Math.max(high, value); }
  const span = high - low || 1;
  const image = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    const t = ((data[i] - low) / span) * (DEPTH_STOPS.length - 1);
    const k = Math.min(Math.floor(t), DEPTH_STOPS.length - 2);
    const a = DEPTH_STOPS[k], b = DEPTH_STOPS[k + 1], f = t - k;
    image.data.set([0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f)).concat(255), 4 * i);
  }
  const depthCanvas = canvas(width, height);
  depthCanvas.getContext("2d").putImageData(image, 0, 0);
  const view = $("output-view");
  view.width = size.width;
  view.height = size.height;
  view.getContext("2d").drawImage(depthCanvas, 0, 0, size.width, size.height);
  $("output-caption").textContent = `Depth ${low.toFixed(2)} m (yellow) to ${high.toFixed(2)} m (blue)`;
}

// The bytes of a typed array as base64: tensors leave the page exactly (tests compare them in Python).
function toBase64(array) {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

$("image-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) run(file);
});
$("opacity").addEventListener("input", drawOverlay);
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (file && session) run(file);
});
load().catch(fail);
