// Tumorscope's slice canvas: one view of a volume, drawn here from volumes fetched once, so
// that stepping through slices (wheel, arrow keys, Page Up/Down) needs no server round trip.
// Python (tumorscope/app/slice_canvas.py) sends what to draw; this file only samples and
// blends, exactly as render/slices.py's render_view does on the server (nearest-neighbour
// enlargement, the overlay's code map and palette, the crosshair, the edge letters).

"use strict";

function send(type, data) {
  window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, data), "*");
}

const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d");
const statusLine = document.getElementById("status");
const loadId = Math.random().toString(36).slice(2);  // slice events stay unique across reloads

let args = null;          // the last render's arguments
let slice = 0;            // the slice shown; moves here, and when Python moves it (seq)
let lastSeq = null;
let lastCase = null;
let events = 0;           // slice reports sent
let reported = null;      // the slice last reported
let lastClick = {};
let reportTimer = null;
let wheelSum = 0;
let frameHeight = -1;
const loaded = new Map(); // blob url -> Uint8Array (a few kept)
const loading = new Map(); // blob url -> Promise

// What tests and benchmarks read: how many pictures were drawn, of which slice.
window.tumorscope = {drawn: 0, slice: 0, view: null, drawMs: 0, error: null};

function use(url) {
  // Most recently used last; what the current arguments name is never dropped.
  const bytes = loaded.get(url);
  loaded.delete(url);
  loaded.set(url, bytes);
  return bytes;
}

function wanted(a) {
  return [a.grey].concat(a.codes ? [a.codes] : []);
}

function fetchBlob(url) {
  if (loaded.has(url)) return Promise.resolve(use(url));
  if (loading.has(url)) return loading.get(url);
  const promise = fetch(url).then((response) => {
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const stream = response.body.pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).arrayBuffer();
  }).then((buffer) => {
    const bytes = new Uint8Array(buffer);
    loaded.set(url, bytes);
    loading.delete(url);
    const keep = args ? wanted(args) : [];
    for (const old of loaded.keys()) {
      if (loaded.size <= 6) break;
      if (!keep.includes(old) && old !== url) loaded.delete(old);
    }
    return bytes;
  }, (error) => { loading.delete(url); throw error; });
  loading.set(url, promise);
  return promise;
}

// Grey and colour per (code, grey value), blended in float32 as numpy does it; one table
// per palette, kept.
let lutFor = null, lutTable = null;
function blendTable(palette) {
  const key = JSON.stringify(palette);
  if (key !== lutFor) { lutTable = makeTable(palette); lutFor = key; }
  return lutTable;
}

function makeTable(palette) {
  const lut = new Uint8Array((palette.length + 1) * 256 * 3);
  for (let g = 0; g < 256; g++) lut[g * 3] = lut[g * 3 + 1] = lut[g * 3 + 2] = g;
  palette.forEach(([rgb, alpha], i) => {
    const keep = Math.fround(1 - alpha), a = Math.fround(alpha);
    for (let g = 0; g < 256; g++) {
      const o = ((i + 1) * 256 + g) * 3;
      for (let ch = 0; ch < 3; ch++) {
        lut[o + ch] = Math.floor(Math.fround(Math.fround(keep * g)
                                             + Math.fround(a * Math.fround(rgb[ch]))));
      }
    }
  });
  return lut;
}

function draw() {
  const a = args;
  if (!wanted(a).every((url) => loaded.has(url))) { load(a); return; }
  const grey = use(a.grey);
  const codes = a.codes ? use(a.codes) : null;
  const start = performance.now();
  const shape = a.shape, strides = [shape[1] * shape[2], shape[2], 1];
  const [axis, rowAxis, colAxis] = a.axes;
  const [H, W] = a.size;
  const [row0, col0] = a.port;
  if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
  const picture = ctx.createImageData(W, H);
  const px = picture.data;
  const base = slice * strides[axis];
  // Which plane row and column each screen pixel shows: Python's tables, made by PIL's
  // own nearest-neighbour resize (so its rounding at exact halves is the server's).
  const rowOffset = new Int32Array(H), colOffset = new Int32Array(W);
  for (let y = 0; y < H; y++) {
    rowOffset[y] = (shape[rowAxis] - 1 - (row0 + a.rows_of[y])) * strides[rowAxis];
  }
  for (let x = 0; x < W; x++) {
    colOffset[x] = (shape[colAxis] - 1 - (col0 + a.cols_of[x])) * strides[colAxis];
  }
  const lut = blendTable(a.palette);
  let p = 0;
  for (let y = 0; y < H; y++) {
    const rowBase = base + rowOffset[y];
    for (let x = 0; x < W; x++) {
      const i = rowBase + colOffset[x];
      const o = ((codes ? codes[i] : 0) * 256 + grey[i]) * 3;
      px[p] = lut[o]; px[p + 1] = lut[o + 1]; px[p + 2] = lut[o + 2]; px[p + 3] = 255;
      p += 4;
    }
  }
  if (a.crosshair) crosshair(px, a, W, H);
  ctx.putImageData(picture, 0, 0);
  letters(a, W, H);
  const t = window.tumorscope;
  t.drawn += 1; t.slice = slice; t.view = a.view; t.xyz = a.xyz.slice();
  t.xyz[a.axes[0]] = slice;
  t.drawMs = performance.now() - start;
  canvas.dataset.slice = String(slice);
  if (canvas.style.opacity !== "1") canvas.style.opacity = "1";
  if (statusLine.textContent) statusLine.textContent = "";
  fitFrame();
}

function crosshair(px, a, W, H) {
  const [, rowAxis, colAxis] = a.axes;
  const [row0, col0, rows, cols] = a.port;
  const r = a.shape[rowAxis] - 1 - a.xyz[rowAxis], c = a.shape[colAxis] - 1 - a.xyz[colAxis];
  const yi = Math.min(H - 1, Math.max(0, Math.trunc((r - row0 + 0.5) * H / rows)));
  const xi = Math.min(W - 1, Math.max(0, Math.trunc((c - col0 + 0.5) * W / cols)));
  const keep = 1 - a.crosshair_alpha;
  const add = a.crosshair_rgb.map((v) => Math.fround(Math.fround(a.crosshair_alpha) * v));
  const blend = (p) => {
    for (let ch = 0; ch < 3; ch++) px[p + ch] = Math.floor(keep * px[p + ch] + add[ch]);
  };
  for (let x = 0; x < W; x++) blend((yi * W + x) * 4);  // the row, then the column,
  for (let y = 0; y < H; y++) blend((y * W + xi) * 4);  // as the server draws them
}

function letters(a, W, H) {
  const pad = 4;
  ctx.font = `${a.letter_px}px "DejaVu Sans", sans-serif`;
  ctx.lineJoin = "round";
  ctx.lineWidth = 4;
  ctx.strokeStyle = "black";
  ctx.fillStyle = "white";
  const spots = [[a.letters[0], pad, H / 2, "left", "middle"],
                 [a.letters[1], W - pad, H / 2, "right", "middle"],
                 [a.letters[2], W / 2, pad, "center", "top"],
                 [a.letters[3], W / 2, H - pad, "center", "bottom"]];
  for (const [text, x, y, align, baseline] of spots) {
    ctx.textAlign = align; ctx.textBaseline = baseline;
    ctx.strokeText(text, x, y);
    ctx.fillText(text, x, y);
  }
}

function fitFrame() {
  // Enlarged on screen: crisp voxels; shown smaller than drawn: smoothed, as the server's
  // <img> is, so one-pixel lines do not vanish.
  const shown = canvas.getBoundingClientRect();
  const rendering = shown.width >= canvas.width ? "pixelated" : "auto";
  if (canvas.style.imageRendering !== rendering) canvas.style.imageRendering = rendering;
  const height = Math.ceil(shown.height) +
    (statusLine.textContent ? statusLine.offsetHeight : 0);
  if (height !== frameHeight) {
    frameHeight = height;
    send("streamlit:setFrameHeight", {height: height});
  }
}

function value() {
  // The seq and case the steps were made on: Python drops a report it has since overruled.
  return Object.assign({}, lastClick, {slice: slice, slice_event: `${loadId}-${events}`,
                                       seq: lastSeq, case: lastCase});
}

function report() {
  reportTimer = null;
  if (slice === reported) return;
  events += 1;
  reported = slice;
  send("streamlit:setComponentValue", {value: value(), dataType: "json"});
}

function step(delta) {
  if (!args || !ready()) return false;
  const next = Math.min(args.shape[args.axes[0]] - 1, Math.max(0, slice + delta));
  if (next === slice) return false;
  slice = next;
  draw();
  clearTimeout(reportTimer);
  reportTimer = setTimeout(report, args.report_ms);
  return true;
}

function ready() {
  return wanted(args).every((url) => loaded.has(url));
}

canvas.addEventListener("keydown", (event) => {
  const delta = {ArrowUp: 1, ArrowRight: 1, PageUp: 1,
                 ArrowDown: -1, ArrowLeft: -1, PageDown: -1}[event.key];
  if (delta === undefined) return;
  event.preventDefault();
  step(delta);
});

canvas.addEventListener("wheel", (event) => {
  if (!args) return;
  const last = args.shape[args.axes[0]] - 1;
  // At the first or last slice, a wheel turn beyond it scrolls the page instead.
  if ((event.deltaY > 0 && slice === 0) || (event.deltaY < 0 && slice === last)) return;
  event.preventDefault();
  // One slice per notch: ~100 px, or 3 lines; a trackpad's small deltas add up.
  wheelSum += event.deltaY * [1, 33.4, 100][event.deltaMode];
  while (Math.abs(wheelSum) >= 100) {
    step(wheelSum > 0 ? -1 : 1);
    wheelSum -= Math.sign(wheelSum) * 100;
  }
}, {passive: false});

canvas.addEventListener("click", (event) => {
  if (!args || !ready()) return;  // nothing drawn yet: a click would be on nothing
  canvas.focus();
  const box = canvas.getBoundingClientRect();
  lastClick = {x: event.clientX - box.left, y: event.clientY - box.top,
               width: box.width, height: box.height, unix_time: Date.now()};
  clearTimeout(reportTimer);
  reportTimer = null;
  if (slice !== reported) { events += 1; reported = slice; }
  send("streamlit:setComponentValue", {value: value(), dataType: "json"});
});

function load(a) {
  const showing = wanted(a);
  // Until this picture is drawn, the last one is not shown as if it were this one (another
  // patient, modality or window): it is dimmed, and steps wait.
  canvas.style.opacity = "0.25";
  statusLine.textContent = "loading slices…";
  fitFrame();
  Promise.all(showing.map(fetchBlob)).then(() => { if (args === a) draw(); }, (error) => {
    if (args !== a) return;
    window.tumorscope.error = String(error);
    canvas.width = canvas.width;  // cleared: no old picture under the message
    statusLine.textContent = `cannot load the slices: ${error}`;
    fitFrame();
  });
}

window.addEventListener("message", (event) => {
  if (!event.data || event.data.type !== "streamlit:render") return;
  const a = event.data.args;
  // Python's slice is taken when Python moved it (a slider, a button, a click, a jump: seq
  // changes) or another case opened; otherwise this view's own steps stand, even while
  // Python has not yet seen the last of them.
  if (lastSeq === null || a.seq !== lastSeq || a.case !== lastCase) {
    slice = a.slice;
    reported = a.slice;
  }
  slice = Math.min(a.shape[a.axes[0]] - 1, Math.max(0, slice));
  lastSeq = a.seq; lastCase = a.case; args = a;
  if (ready()) draw(); else load(a);
});

new ResizeObserver(() => fitFrame()).observe(canvas);
send("streamlit:componentReady", {apiVersion: 1});
