"use strict";
// n2n web page: denoise a photo and compare, train a model and watch it learn. No external requests.

const $ = (id) => document.getElementById(id);
const MiB = 1024 * 1024;
const state = {
  limits: null,        // GET /limits, once loaded
  limitsReady: null,   // its promise
  file: null,          // the latest photo picked (for "Run again")
  run: null,           // the one denoise run allowed to update the page: {file, ctrl, urls, ...}
  shown: null,         // {file, width, height} of the result on screen
  jobs: [],            // GET /train, newest first
  followed: null,      // id of the training job shown by the chart and the buttons above it
  points: {},          // job id -> [{step, loss}] polled while the page was open
  trainTimer: null,
  modelInfo: {},       // model id -> {date, psnr} known from its training job
  statuses: null,      // GET /train/statuses: {statuses, final}, once loaded
  statusesReady: null, // its promise (fetched again after a failure)
  initSuggested: null, // the "Start from" model the page chose for noisy photos (until the user picks one)
};

function say(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    const d = body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".") || "request"}: ${e.msg}`).join("; ");
    return JSON.stringify(d);
  } catch (e) {
    return resp.statusText || `HTTP ${resp.status}`;
  }
}

class UserError extends Error {}  // a message meant for the person at the page, shown as is

const mb = (bytes) => {
  const v = bytes / MiB;
  return `${v >= 10 ? Math.round(v) : Number(v.toPrecision(2))} MB`;
};
const mp = (pixels) => {
  const v = pixels / 1e6;
  return `${v >= 10 ? Math.round(v) : Number(v.toPrecision(2))} megapixels`;
};
const ext = (fmt) => (fmt === "jpeg" ? "jpg" : fmt);
/** The format of a result from its media type (for its file name when the server gave none). */
function formatOfType(type, run) {
  const t = (type || "").split(";")[0].trim().toLowerCase();
  const known = { "image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/tiff": "tiff",
                  "image/heic": "heic", "image/heif": "heic", "image/avif": "avif" };
  return known[t] || (run.info && run.info.format) || "png";
}

/** The API's ?strength=0..1 for a position of the strength slider (0..100 %), e.g. "1", "0.7". */
const strengthOf = (percent) => String(Number((Number(percent) / 100).toFixed(2)));

/** What the strength slider at ``percent`` means, for its aria-valuetext. */
function strengthText(percent) {
  const p = Math.round(Number(percent));
  if (p >= 100) return "100 %: fully denoised";
  if (p <= 0) return "0 %: the photo unchanged";
  return `${p} %: ${100 - p} % of the photo's grain kept`;
}

function showStrength() {
  const slider = $("strength");
  slider.setAttribute("aria-valuetext", strengthText(slider.value));
  $("strength-value").textContent = `${slider.value} %`;
}

/** The status line of a finished run: the photo, its size, the model, the strength (when below 100 %), the time,
 * and the noise level the service measured in the photo (X-Noise-Sigma), when it sent one. */
function doneText(run, out, width, height, seconds) {
  const at = run.strength === "1" ? "" : ` at ${Math.round(Number(run.strength) * 100)} % strength`;
  const noise = out.sigma ? `; estimated noise level σ ${out.sigma} (of 255)` : "";
  return `Done: ${run.file.name}, ${width}×${height} pixels, denoised by model ${out.model || "?"}${at} in ` +
         `${seconds} s${run.job ? " (as a background job)" : ""}${noise}.`;
}

// ---------------------------------------------------------------------------------------- models
/** What is known of a model: {name, psnr (validation PSNR in dB, or null), date (a Date, or null)}. */
function modelFacts(m) {
  const card = m.card || {};
  const known = state.modelInfo[m.id] || {};
  let psnr = null;
  if (Array.isArray(card.metrics)) {
    const first = card.metrics.find((x) => x && typeof x.psnr === "number");
    if (first) psnr = first.psnr;
  } else if (card.metrics && typeof card.metrics.val_psnr === "number") {
    psnr = card.metrics.val_psnr;
  }
  if (psnr == null && typeof card.val_psnr === "number") psnr = card.val_psnr;
  if (psnr == null && known.psnr != null) psnr = known.psnr;
  if (psnr == null && Array.isArray(card.validation_history) && card.validation_history.length) {
    const last = card.validation_history[card.validation_history.length - 1];
    if (typeof last.val_psnr === "number") psnr = last.val_psnr;
  }
  const stamp = card.created_at || card.trained_at || card.date || m.created_at || known.date;
  let date = null;
  if (typeof stamp === "number") date = new Date(stamp * 1000);
  else if (typeof stamp === "string" && !Number.isNaN(Date.parse(stamp))) date = new Date(stamp);
  const given = m.name || card.name;
  const name = given && given !== "model" ? given : m.id;
  return { name, psnr: psnr == null ? null : Number(psnr), date, architecture: card.architecture };
}

/** The short label of a model: "name · 29.87 dB" (the name alone when no PSNR is known). */
function modelLabel(m) {
  const f = modelFacts(m);
  return f.psnr != null ? `${f.name} · ${f.psnr.toFixed(2)} dB` : f.name;
}

/** The long description of a model (its tooltip): id, architecture, date, PSNR. */
function modelDetails(m) {
  const f = modelFacts(m);
  const parts = [f.name !== m.id ? `${f.name} (${m.id})` : m.id];
  if (f.architecture) parts.push(f.architecture);
  parts.push(f.date ? f.date.toISOString().slice(0, 10) : m.shipped ? "shipped" : "date unknown");
  if (f.psnr != null) parts.push(`validation PSNR ${f.psnr.toFixed(2)} dB`);
  if (m.active) parts.push("active: answers /denoise");
  return parts.join(" · ");
}

async function loadModels() {
  const sel = $("model");
  try {
    const resp = await fetch("/models", { cache: "no-store" });
    if (!resp.ok) throw new Error(await errorText(resp));
    const body = await resp.json();
    state.models = body.models;
    const chosen = sel.dataset.touched ? sel.value : null;
    sel.innerHTML = "";
    const init = $("init");
    const start = init.value;
    init.length = 1;  // keep "a fresh network"
    for (const m of body.models) {
      const text = modelLabel(m);
      const from = new Option(text, m.id, false, m.id === start);
      from.title = modelDetails(m);
      init.appendChild(from);
      const opt = new Option(text + (m.active ? " ✓ active" : ""), m.id);
      opt.title = modelDetails(m);
      opt.selected = chosen ? m.id === chosen : m.active;
      sel.appendChild(opt);
    }
    renderModels();
    suggestInit();  // "blind" is listed now
  } catch (e) {
    say($("status"), `Could not list the models: ${e.message}`, true);
  }
}

/** The models, in the training panel: one line each, with "Use" and "Delete" (trained models only). */
function renderModels() {
  const ul = $("models");
  ul.replaceChildren();
  for (const m of state.models || []) {
    const li = document.createElement("li");
    li.dataset.model = m.id;
    li.classList.toggle("active", Boolean(m.active));
    const text = document.createElement("span");
    text.className = "job-text";
    text.textContent = modelLabel(m) + (m.active ? " ✓ active" : "");
    text.title = modelDetails(m);
    const actions = document.createElement("div");
    actions.className = "job-actions";
    const label = modelLabel(m);
    if (!m.active) actions.appendChild(actionButton("Use", "activate", () => activateModel(m.id), `Use ${label}`));
    if (!m.shipped && !m.active) {
      actions.appendChild(actionButton("Delete", "delete danger", () => deleteModel(m.id), `Delete ${label}`));
    }
    li.append(text, actions);
    ul.appendChild(li);
  }
}

/** A button whose accessible name begins with its visible text (axe: label-content-name-mismatch). */
function actionButton(text, cls, onClick, name) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  if (name && name !== text) b.setAttribute("aria-label", name);
  b.addEventListener("click", onClick);
  return b;
}

// ---------------------------------------------------------------------------------------- checks
async function bytesOf(file, start, length) {
  return new DataView(await file.slice(start, start + length).arrayBuffer());
}

const ascii = (dv, at, n) => String.fromCharCode(...Array.from({ length: n }, (_, i) => dv.getUint8(at + i)));

/** {format, width, height} from the file's header (width null when not found), or null if it is none of
 * the formats the service reads. Reads only the header, never the pixels. */
async function imageInfo(file) {
  const dv = await bytesOf(file, 0, 64 * 1024);
  const n = dv.byteLength;
  const b = (i) => (i < n ? dv.getUint8(i) : -1);
  if (n >= 8 && b(0) === 0x89 && ascii(dv, 1, 3) === "PNG") {
    return n >= 24 ? { format: "png", width: dv.getUint32(16), height: dv.getUint32(20) } : { format: "png", width: null };
  }
  if (b(0) === 0xff && b(1) === 0xd8) return jpegInfo(file);
  if (n >= 16 && ascii(dv, 0, 4) === "RIFF" && ascii(dv, 8, 4) === "WEBP") {
    const kind = ascii(dv, 12, 4);
    const u24 = (at) => dv.getUint8(at) | (dv.getUint8(at + 1) << 8) | (dv.getUint8(at + 2) << 16);
    if (kind === "VP8X" && n >= 30) return { format: "webp", width: 1 + u24(24), height: 1 + u24(27) };
    if (kind === "VP8L" && n >= 25) {
      const b1 = b(22), b2 = b(23), b3 = b(24);
      return { format: "webp", width: 1 + (((b1 & 0x3f) << 8) | b(21)),
               height: 1 + (((b3 & 0xf) << 10) | (b2 << 2) | ((b1 & 0xc0) >> 6)) };
    }
    if (kind === "VP8 " && n >= 30) {
      return { format: "webp", width: dv.getUint16(26, true) & 0x3fff, height: dv.getUint16(28, true) & 0x3fff };
    }
    return { format: "webp", width: null };
  }
  if (n >= 26 && ascii(dv, 0, 2) === "BM") {
    const header = dv.getUint32(14, true);
    if (header === 12) return { format: "bmp", width: dv.getUint16(18, true), height: dv.getUint16(20, true) };
    return { format: "bmp", width: Math.abs(dv.getInt32(18, true)), height: Math.abs(dv.getInt32(22, true)) };
  }
  // camera RAW: the server decodes it (LibRaw) and checks its decoded size; the page checks only the magic
  if (n >= 15 && ascii(dv, 0, 15) === "FUJIFILMCCD-RAW") return { format: "raf", raw: true, width: null };
  const magic = n >= 4 ? ascii(dv, 0, 4) : "";
  if (RAW_MAGIC[magic]) return { format: RAW_MAGIC[magic], raw: true, width: null };
  if (n >= 12 && ascii(dv, 4, 4) === "ftyp") return ftypInfo(dv);
  if (n >= 8 && (magic === "II*\0" || magic === "MM\0*")) {
    const suffix = (file.name.match(/\.([^.]+)$/) || [])[1];
    const raw = suffix && RAW_SUFFIXES.includes(suffix.toLowerCase());
    if (raw || (n >= 10 && ascii(dv, 8, 2) === "CR")) return { format: raw ? suffix.toLowerCase() : "cr2", raw: true, width: null };
    const info = await tiffInfo(file, magic === "II*\0");
    return info.dng ? { format: "dng", raw: true, width: null } : info;
  }
  if (n >= 8 && (magic === "II+\0" || magic === "MM\0+")) return { format: "tiff", width: null };
  return null;
}

/** TIFF-structured RAWs with a magic of their own (Olympus, Panasonic). */
const RAW_MAGIC = { IIRO: "orf", IIRS: "orf", MMOR: "orf", "IIU\0": "rw2" };
/** Extensions of the TIFF-based camera RAW formats: their header alone reads as a TIFF. */
const RAW_SUFFIXES = ["dng", "cr2", "nef", "nrw", "arw", "srf", "sr2", "orf", "rw2", "rwl", "pef", "srw", "3fr",
                      "iiq", "erf", "kdc", "dcr", "mos"];
/** ISO base media file brands: HEIF (HEIC) and AVIF images, Canon CR3. */
const HEIF_BRANDS = ["heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"];
const AVIF_BRANDS = ["avif", "avis"];

function ftypInfo(dv) {
  const size = Math.min(dv.getUint32(0), dv.byteLength);
  const major = ascii(dv, 8, 4);
  const brands = [major];
  for (let at = 16; at + 4 <= size; at += 4) brands.push(ascii(dv, at, 4));
  if (major === "crx ") return { format: "cr3", raw: true, width: null };
  if (AVIF_BRANDS.includes(major)) return { format: "avif", width: null };
  if (["heic", "heix", "heim", "heis", "hevc", "hevx"].includes(major)) return { format: "heic", width: null };
  if (brands.some((b) => AVIF_BRANDS.includes(b))) return { format: "avif", width: null };
  if (brands.some((b) => HEIF_BRANDS.includes(b))) return { format: "heic", width: null };
  return null;
}

async function jpegInfo(file) {
  let pos = 2;
  for (let hops = 0; hops < 200 && pos + 9 < file.size; hops++) {
    const dv = await bytesOf(file, pos, 10);
    if (dv.getUint8(0) !== 0xff) break;
    const marker = dv.getUint8(1);
    if (marker === 0xff) { pos += 1; continue; }
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return { format: "jpeg", width: dv.getUint16(7), height: dv.getUint16(5) };
    }
    if (marker === 0xd9 || marker === 0xda) break;
    pos += 2 + dv.getUint16(2);
  }
  return { format: "jpeg", width: null };
}

async function tiffInfo(file, little) {
  try {
    const ifd = (await bytesOf(file, 4, 4)).getUint32(0, little);
    const count = (await bytesOf(file, ifd, 2)).getUint16(0, little);
    const dv = await bytesOf(file, ifd + 2, Math.min(count, 512) * 12);
    const tags = {};
    for (let i = 0; i < Math.min(count, 512) && (i + 1) * 12 <= dv.byteLength; i++) {
      const tag = dv.getUint16(i * 12, little), type = dv.getUint16(i * 12 + 2, little);
      tags[tag] = type === 3 ? dv.getUint16(i * 12 + 8, little) : dv.getUint32(i * 12 + 8, little);
    }
    if (tags[50706] !== undefined) return { format: "dng", dng: true, width: null };  // DNGVersion
    return { format: "tiff", width: tags[256] ?? null, height: tags[257] ?? null };
  } catch (e) {
    return { format: "tiff", width: null };
  }
}

function limitsText(lim) {
  return `photos may be up to ${mb(lim.max_upload_bytes)} and ${mp(lim.max_pixels)}`;
}

/** Throws a UserError when the photo cannot be sent as it is; returns its header info. */
async function checkFile(file) {
  if (!file.size) throw new UserError(`${file.name} is empty (0 bytes): choose a photo file.`);
  const lim = await state.limitsReady;
  if (lim && file.size > lim.max_upload_bytes) {
    throw new UserError(`${file.name} is too large: it is ${mb(file.size)}, and ${limitsText(lim)}.`);
  }
  const info = await imageInfo(file);
  if (!info) {
    throw new UserError(`${file.name} is not a readable image: choose a PNG, JPEG, HEIC, AVIF, TIFF, WebP or BMP file, or a camera RAW (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2).`);
  }
  if (lim && info.width && info.height) {
    const pixels = info.width * info.height;
    if (pixels > lim.max_pixels) {
      throw new UserError(`${file.name} is too large: it is ${info.width}×${info.height} = ${mp(pixels)}, and ` +
                          `${limitsText(lim)}.`);
    }
    const long = Math.max(info.width, info.height), short = Math.max(1, Math.min(info.width, info.height));
    if (long > lim.max_aspect_ratio * short) {
      throw new UserError(`${file.name} is ${info.width}×${info.height}: its long side is more than ` +
                          `${lim.max_aspect_ratio} times its short side. Crop it to a photograph's proportions.`);
    }
  }
  return info;
}

async function refusal(resp, file) {
  const detail = await errorText(resp);
  if (resp.status === 413) {
    const lim = await state.limitsReady;
    return `${file.name} is too large: ${lim ? limitsText(lim) : detail}.`;
  }
  if (resp.status === 503) return `The service is busy; try again in a moment (${detail}).`;
  return `Could not denoise ${file.name}: ${detail}`;
}

// ---------------------------------------------------------------------------------------- denoise
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); reject(new DOMException("aborted", "AbortError")); },
                            { once: true });
  });
}

function objectUrl(run, blob) {
  const url = URL.createObjectURL(blob);
  run.urls.push(url);
  return url;
}

/** Tell the server to drop a background job this page no longer needs: one it no longer wants (Cancel, a newer
 * pick, leaving the page, a failure), or one whose result the page holds already (its blob, which Download saves):
 * DELETE /denoise/jobs/{id} stops it at its next tile and removes its upload and result, so that a session of many
 * photos never fills this client's share of jobs (N2N_MAX_JOBS_PER_CLIENT) or the result store. Sent once; keepalive,
 * so that it is still sent while the page unloads. */
function forgetJob(run) {
  if (!run || !run.jobId || run.jobForgotten) return;
  run.jobForgotten = true;
  fetch(`/denoise/jobs/${encodeURIComponent(run.jobId)}`, { method: "DELETE", keepalive: true }).catch(() => {});
}

function dropRun(run) {
  if (!run) return;
  forgetJob(run);
  run.ctrl.abort();
  clearInterval(run.ticker);
  if (run !== state.shownRun) run.urls.forEach((u) => URL.revokeObjectURL(u));
}

function clearResult() {
  $("viewer").hidden = true;
  $("empty").hidden = false;
  for (const id of ["before", "after"]) $(id).removeAttribute("src");
  $("download").removeAttribute("href");
  if (state.shownRun) state.shownRun.urls.forEach((u) => URL.revokeObjectURL(u));
  state.shownRun = null;
}

function showWork(run, on) {
  if (run !== state.run) return;
  $("work").hidden = !on;
  if (!on) return;
  const bar = $("denoise-progress");
  if (run.job) {
    bar.value = run.fraction || 0;
  } else {
    bar.removeAttribute("value");  // indeterminate: a single request tells nothing until it ends
  }
  const secs = Math.round((performance.now() - run.t0) / 1000);
  if (!run.job) {
    $("work-text").textContent = `${secs} s`;
    return;
  }
  if (run.stage === "uploading") {
    $("work-text").textContent = `uploading ${Math.round(100 * (run.uploaded || 0))}%, ${secs} s`;
    return;
  }
  const t = run.tiles;
  const tiles = t && t.total > 0 ? `${t.done} of ${t.total} tiles` : "starting…";  // never "0 of 0 tiles"
  const eta = run.stage === "running" && t && t.total > 0 ? etaText(run.eta) : "";
  $("work-text").textContent = `${run.stage || "queued"}: ${tiles}${eta}, ${secs} s`;
}

/** Denoise ``file``: the latest call wins; an earlier one still running is aborted and never touches the page. */
async function denoise(file) {
  if (!file) return;
  dropRun(state.run);
  clearResult();
  state.file = file;
  $("rerun").disabled = false;
  const run = { file, ctrl: new AbortController(), urls: [], t0: performance.now(), format: $("format").value,
                model: $("model").value, strength: strengthOf($("strength").value), job: false };
  state.run = run;
  const current = () => state.run === run;
  say($("status"), `Checking ${file.name}…`);
  try {
    const info = await checkFile(file);
    if (!current()) return;
    run.info = info;
    const lim = state.limits;
    run.job = Boolean(lim && info.width && info.height && info.width * info.height > lim.page_job_pixels);
    say($("status"), `Denoising ${file.name} (${mb(file.size)}${info.width ? `, ${info.width}×${info.height}` : ""})…`);
    showWork(run, true);
    run.ticker = setInterval(() => showWork(run, true), 1000);
    const [beforeUrl, out] = await Promise.all([beforeOf(run), run.job ? viaJob(run) : viaRequest(run)]);
    if (!current()) return;
    await show(run, beforeUrl, out);
  } catch (e) {
    if (!current() || e.name === "AbortError") return;
    const msg = e instanceof UserError ? e.message
      : e instanceof TypeError ? `The service could not be reached: ${e.message}` : `Could not denoise ${file.name}: ${e.message}`;
    fail(run, msg);
  } finally {
    clearInterval(run.ticker);
    if (current()) showWork(run, false);
  }
}

function fail(run, message) {
  if (run !== state.run) return;
  forgetJob(run);
  run.ctrl.abort();
  clearResult();
  say($("status"), message, true);
}

function query(run) {
  const params = new URLSearchParams({ format: run.format, strength: run.strength });
  if (run.model) params.set("model", run.model);
  return params;
}

function upload(file) {
  const form = new FormData();
  form.append("file", file);
  return form;
}

async function viaRequest(run) {
  const resp = await fetch(`/denoise?${query(run)}`, { method: "POST", body: upload(run.file), signal: run.ctrl.signal });
  if (!resp.ok) throw new UserError(await refusal(resp, run.file));
  return resultOf(run, resp);
}

/** POST /denoise/jobs through an XMLHttpRequest, which tells when the photo has gone up: a Cancel (or a newer pick)
 * while it is still going up aborts the upload, and the server makes no job; one once it has gone up lets the answer
 * come, then DELETEs the job the server made meanwhile. Resolves to a Response, like fetch. */
function postJob(run) {
  const signal = run.ctrl.signal;
  return new Promise((resolve, reject) => {
    const aborted = () => new DOMException("aborted", "AbortError");
    if (signal.aborted) { reject(aborted()); return; }
    const xhr = new XMLHttpRequest();
    let sent = false;
    const stop = () => {
      if (!sent) xhr.abort();  // still uploading: the server has no whole photo, so no job
      reject(aborted());
    };
    signal.addEventListener("abort", stop, { once: true });
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && e.total) run.uploaded = e.loaded / e.total;
      showWork(run, true);
    });
    xhr.upload.addEventListener("load", () => {
      sent = true;
      run.stage = "queued";  // the photo has gone up: the server makes the job
      showWork(run, true);
    });
    xhr.addEventListener("load", () => {
      signal.removeEventListener("abort", stop);
      const resp = new Response(xhr.status === 204 ? null : xhr.responseText, {
        status: xhr.status, statusText: xhr.statusText,
        headers: { "Content-Type": xhr.getResponseHeader("Content-Type") || "text/plain" } });
      if (!signal.aborted) { resolve(resp); return; }
      // cancelled after the upload: the answer names a job no one wants now
      if (resp.ok) resp.json().then(({ id }) => { run.jobId = id; forgetJob(run); }).catch(() => {});
    });
    xhr.addEventListener("error", () => {
      signal.removeEventListener("abort", stop);
      reject(new TypeError("the upload failed"));
    });
    xhr.addEventListener("abort", () => reject(aborted()));
    xhr.open("POST", `/denoise/jobs?${query(run)}`);
    xhr.send(upload(run.file));
  });
}

async function viaJob(run) {
  const signal = run.ctrl.signal;
  run.stage = "uploading";
  showWork(run, true);
  const resp = await postJob(run);
  if (!resp.ok) throw new UserError(await refusal(resp, run.file));
  const { id } = await resp.json();
  run.jobId = id;
  if (signal.aborted) {  // cancelled while the answer was being read
    forgetJob(run);
    throw new DOMException("aborted", "AbortError");
  }
  for (let wait = 250; ; wait = Math.min(1000, wait * 1.5)) {
    await sleep(wait, signal);
    const r = await fetch(`/denoise/jobs/${id}`, { signal, cache: "no-store" });
    if (!r.ok) throw new UserError(`Lost track of the denoising of ${run.file.name}: ${await errorText(r)}`);
    const job = await r.json();
    run.stage = job.status;
    run.tiles = job.progress;
    run.eta = job.eta_seconds;
    run.fraction = job.status === "succeeded" ? 1 : job.progress.fraction;
    showWork(run, true);
    if (job.status === "failed") throw new UserError(`Could not denoise ${run.file.name}: ${job.error}`);
    if (job.status === "succeeded") break;
  }
  const res = await fetch(`/denoise/jobs/${id}/result`, { signal, cache: "no-store" });
  if (!res.ok) throw new UserError(`Could not fetch the result for ${run.file.name}: ${await errorText(res)}`);
  const out = await resultOf(run, res);
  forgetJob(run);  // the page holds the result's blob (shown, and saved by Download): the server's copy can go
  return out;
}

/** The answer's blob URL, model, noise estimate, and the file name the server gave it. */
async function resultOf(run, resp) {
  const blob = await resp.blob();
  const disposition = resp.headers.get("Content-Disposition") || "";
  const named = disposition.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
  return { url: objectUrl(run, blob), blob, model: resp.headers.get("X-Model-Id"), sigma: resp.headers.get("X-Noise-Sigma"),
           type: blob.type || resp.headers.get("Content-Type") || "", name: named ? decodeURIComponent(named[1]) : null };
}

function decodes(url) {
  const img = new Image();
  img.src = url;
  return img.decode().then(() => true, () => false);
}

/** A URL of the photo as sent, which this browser can display: the file itself, or (TIFF and whatever else it
 * cannot decode) an 8-bit PNG of its decoded pixels from the server. */
async function beforeOf(run) {
  const own = objectUrl(run, run.file);
  if (await decodes(own)) return own;
  if (state.run !== run) throw new DOMException("stale", "AbortError");
  const resp = await fetch("/preview", { method: "POST", body: upload(run.file), signal: run.ctrl.signal });
  if (!resp.ok) throw new UserError(await refusal(resp, run.file));
  return objectUrl(run, await resp.blob());
}

function loadImg(img, url) {
  return new Promise((resolve) => {
    img.onload = () => resolve(true);
    img.onerror = () => resolve(false);
    img.src = url;
  });
}

async function show(run, beforeUrl, out) {
  const before = $("before"), after = $("after");
  let shownUrl = out.url;
  if (!(await decodes(out.url)) && run === state.run) {
    // a result this browser cannot display (TIFF, HEIC, ...): shown through /preview, downloaded as it is
    const form = new FormData();
    form.append("file", out.blob, out.name || "result");
    const resp = await fetch("/preview", { method: "POST", body: form, signal: run.ctrl.signal });
    if (resp.ok) shownUrl = objectUrl(run, await resp.blob());
  }
  const [okAfter, okBefore] = await Promise.all([loadImg(after, shownUrl), loadImg(before, beforeUrl)]);
  if (run !== state.run) return;
  if (!okAfter || !okBefore) {
    fail(run, `This browser cannot display the ${okAfter ? "photo" : "result"} of ${run.file.name}.`);
    return;
  }
  state.shownRun = run;
  const base = run.file.name.replace(/\.[^.]+$/, "") || "photo";
  const dl = $("download");
  dl.href = out.url;
  dl.download = out.name || `${base}-denoised.${ext(run.format !== "auto" ? run.format : formatOfType(out.type, run))}`;
  const w = after.naturalWidth, h = after.naturalHeight;
  const same = state.shown && state.shown.file === run.file && state.shown.width === w && state.shown.height === h;
  state.shown = { file: run.file, width: w, height: h };
  $("stage").setAttribute("aria-label", `Before and after comparison of ${run.file.name}`);
  $("empty").hidden = true;
  $("viewer").hidden = false;
  if (same) layout(); else resetView(w, h);
  const secs = ((performance.now() - run.t0) / 1000).toFixed(1);
  say($("status"), doneText(run, out, w, h, secs));
}

function cancelDenoise() {
  const run = state.run;
  if (!run) return;
  state.run = null;
  dropRun(run);
  $("work").hidden = true;
  say($("status"), `Cancelled ${run.file.name}.`);
}

function rerun() {
  if (state.file) denoise(state.file);
}

function setupDrop() {
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) denoise(file);
  });
}

// ---------------------------------------------------------------------------------------- viewer
// view.scale: CSS pixels per image pixel (100% = one image pixel per device pixel = 1 / devicePixelRatio);
// view.x, view.y: where the photo's top left corner sits in the stage (CSS pixels); view.split: where the
// line is, as a fraction of the part of the photo in view, so that it can never leave the view.
const view = { w: 0, h: 0, scale: 1, x: 0, y: 0, fit: true, split: 0.5, fitScale: 1 };
const MIN_STAGE = 120;
const dpr = () => window.devicePixelRatio || 1;

function stageSize() {
  const stage = $("stage");
  return { W: stage.clientWidth, H: stage.clientHeight };
}

/** The desktop layout (style.css): the view fills the window beside the rail of controls. */
const DESKTOP = "(min-width: 800px)";
/** "Fit" never enlarges a photo past one image pixel per CSS pixel; on a high-density screen it may go past one
 * image pixel per device pixel ("100%"), so that a 500-px-wide photo fills a 390-px-wide phone. */
const FIT_CAP = 1;

/** Size the stage to the photo at fit (so that no empty band sits under it) and compute the fit scale. On a
 * desktop the stage may be as tall as the space left to the view; elsewhere three quarters of the window. */
function layout() {
  if (!view.w) return;
  const stage = $("stage");
  const W = stage.clientWidth;
  const room = window.matchMedia(DESKTOP).matches ? $("stage-box").clientHeight : Math.round(window.innerHeight * 0.75);
  const maxH = Math.max(MIN_STAGE, room - (stage.offsetHeight - stage.clientHeight));
  const s = Math.min(W / view.w, maxH / view.h, FIT_CAP);
  const H = Math.max(MIN_STAGE, Math.min(maxH, Math.round(view.h * s)));
  stage.style.height = `${H + stage.offsetHeight - stage.clientHeight}px`;  // border-box: H inside the borders
  view.fitScale = Math.min(W / view.w, H / view.h, FIT_CAP);
  if (view.fit) view.scale = view.fitScale;
  render();
}

function resetView(w, h) {
  Object.assign(view, { w, h, fit: true });
  layout();
}

function clampView() {
  const { W, H } = stageSize();
  const dw = view.w * view.scale, dh = view.h * view.scale;
  view.x = dw <= W ? (W - dw) / 2 : Math.min(0, Math.max(W - dw, view.x));
  view.y = dh <= H ? (H - dh) / 2 : Math.min(0, Math.max(H - dh, view.y));
}

function visible() {
  const { W, H } = stageSize();
  const dw = view.w * view.scale, dh = view.h * view.scale;
  return { left: Math.max(0, view.x), right: Math.min(W, view.x + dw),
           top: Math.max(0, view.y), bottom: Math.min(H, view.y + dh), dw, dh };
}

function render() {
  if (!view.w) return;
  if (view.fit) view.scale = view.fitScale;
  clampView();
  const d = dpr();
  view.x = Math.round(view.x * d) / d;
  view.y = Math.round(view.y * d) / d;
  const vis = visible();
  for (const id of ["after", "before"]) {
    const img = $(id);
    img.style.width = `${vis.dw}px`;
    img.style.height = `${vis.dh}px`;
  }
  $("frame").style.transform = `translate(${view.x}px, ${view.y}px)`;
  const stage = $("stage");
  stage.classList.toggle("pixelated", view.scale * d > 1.0001);
  stage.style.touchAction = view.fit ? "pan-y" : "none";  // at fit a vertical swipe still scrolls the page
  const lineX = vis.left + view.split * (vis.right - vis.left);
  const cut = Math.min(vis.dw, Math.max(0, lineX - view.x));
  $("before").style.clipPath = `inset(0px ${vis.dw - cut}px 0px 0px)`;
  const line = $("line");
  line.style.left = `${lineX}px`;
  line.style.top = `${vis.top}px`;
  line.style.height = `${vis.bottom - vis.top}px`;
  const half = $("handle").offsetWidth / 2 + 2, W = stageSize().W;  // the handle stays wholly in view
  const shift = Math.max(0, half - lineX) - Math.max(0, lineX + half - W);
  $("handle").style.transform = shift ? `translateX(${shift}px)` : "";
  const pct = Math.round(view.split * 100);
  const split = $("split");
  if (Number(split.value) !== pct) split.value = String(pct);
  split.setAttribute("aria-valuetext", `${pct} % before`);
  syncZoomSelect();
}

function syncZoomSelect() {
  const sel = $("zoom"), custom = $("zoom-custom");
  const pct = view.scale * dpr() * 100;
  if (view.fit) {
    sel.value = "fit";
  } else {
    const preset = [...sel.options].find((o) => o.value !== "fit" && o.value !== "custom" &&
                                              Math.abs(Number(o.value) * 100 - pct) < 0.5);
    if (preset) {
      sel.value = preset.value;
    } else {
      custom.textContent = `${Math.round(pct)}%`;
      sel.value = "custom";
    }
  }
}

/** Zoom to ``scale`` keeping the photo's point under stage coordinates (px, py) where it is. */
function zoomAt(scale, px, py) {
  const min = Math.min(view.fitScale, 1 / dpr()), max = 32 / dpr();
  const s = Math.min(max, Math.max(min, scale));
  const ix = (px - view.x) / view.scale, iy = (py - view.y) / view.scale;
  view.fit = false;
  view.scale = s;
  view.x = px - ix * s;
  view.y = py - iy * s;
  if (Math.abs(s - view.fitScale) < 1e-9) view.fit = true;
  render();
}

function zoomCentre(scale) {
  const { W, H } = stageSize();
  zoomAt(scale, W / 2, H / 2);
}

function onZoomSelect() {
  const z = $("zoom").value;
  if (z === "fit") {
    view.fit = true;
    render();
  } else if (z !== "custom") {
    zoomCentre(Number(z) / dpr());
  }
}

function stagePoint(e) {
  const r = $("stage").getBoundingClientRect();
  return { x: e.clientX - r.left - $("stage").clientLeft, y: e.clientY - r.top - $("stage").clientTop };
}

function splitFromX(x) {
  const vis = visible();
  if (vis.right <= vis.left) return;
  view.split = Math.min(1, Math.max(0, (x - vis.left) / (vis.right - vis.left)));
  render();
}

function flip() {
  view.split = view.split < 1 ? 1 : 0;
  render();
}

const HELP = {
  pointer: "Left of the line: the photo as sent; right: denoised. Drag the line to move it, drag the photo to pan, " +
           "use the wheel or pinch to zoom; keys: B flips between before and after, + and − zoom, 0 fits, 1 shows " +
           "100%, arrows pan.",
  touch: "Left of the line: the photo as sent; right: denoised. Drag the line to move it, drag the photo to pan, " +
         "pinch to zoom, and choose fit or 100% in Zoom.",
};

/** The viewer's help, in the words of the screen it is read on (no wheel or keys on a touch screen), folded
 * behind the "?" button. */
function setupHelp() {
  const touch = window.matchMedia("(pointer: coarse)");
  const words = () => { $("split-help").textContent = touch.matches ? HELP.touch : HELP.pointer; };
  words();
  if (touch.addEventListener) touch.addEventListener("change", words);
  $("help-toggle").addEventListener("click", () => {
    const open = $("help-toggle").getAttribute("aria-expanded") !== "true";
    $("help-toggle").setAttribute("aria-expanded", String(open));
    $("split-help").hidden = !open;
    layout();
  });
}

function setupViewer() {
  setupHelp();
  const stage = $("stage");
  const pointers = new Map();
  let gesture = null;
  const pinch = () => {
    const [a, b] = [...pointers.values()];
    return { d: Math.hypot(a.x - b.x, a.y - b.y) || 1, x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
  };
  stage.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    stage.focus({ preventScroll: true });
    try { stage.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer */ }
    pointers.set(e.pointerId, stagePoint(e));
    if (pointers.size === 1) {
      const p = stagePoint(e);
      gesture = e.target.closest("#line") ? { kind: "split" }
        : { kind: "pan", x0: p.x, y0: p.y, vx: view.x, vy: view.y };
      stage.classList.toggle("dragging", gesture.kind === "pan");
    } else if (pointers.size === 2) {
      gesture = { kind: "pinch", start: pinch(), scale: view.scale };
    }
  });
  stage.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId) || !gesture) return;
    pointers.set(e.pointerId, stagePoint(e));
    const p = stagePoint(e);
    if (gesture.kind === "split") {
      splitFromX(p.x);
    } else if (gesture.kind === "pan") {
      view.fit = false;
      view.x = gesture.vx + (p.x - gesture.x0);
      view.y = gesture.vy + (p.y - gesture.y0);
      if (view.scale === view.fitScale) view.fit = true;
      render();
    } else if (gesture.kind === "pinch" && pointers.size >= 2) {
      const now = pinch();
      zoomAt(gesture.scale * (now.d / gesture.start.d), now.x, now.y);
    }
  });
  const end = (e) => {
    pointers.delete(e.pointerId);
    if (pointers.size === 1 && gesture && gesture.kind === "pinch") {
      const [p] = pointers.values();
      gesture = { kind: "pan", x0: p.x, y0: p.y, vx: view.x, vy: view.y };
    } else if (!pointers.size) {
      gesture = null;
      stage.classList.remove("dragging");
    }
  };
  stage.addEventListener("pointerup", end);
  stage.addEventListener("pointercancel", end);
  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    const p = stagePoint(e);
    const step = e.deltaMode === 1 ? 0.05 : e.deltaMode === 2 ? 1 : 0.002;
    zoomAt(view.scale * Math.exp(-e.deltaY * step), p.x, p.y);
  }, { passive: false });
  stage.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const { W, H } = stageSize();
    const pan = (dx, dy) => { view.fit = false; view.x += dx; view.y += dy; render(); };
    const keys = {
      b: flip, B: flip,
      "+": () => zoomCentre(view.scale * 1.5), "=": () => zoomCentre(view.scale * 1.5),
      "-": () => zoomCentre(view.scale / 1.5), "0": () => { view.fit = true; render(); },
      "1": () => zoomCentre(1 / dpr()),
      ArrowLeft: () => pan(W / 10, 0), ArrowRight: () => pan(-W / 10, 0),
      ArrowUp: () => pan(0, H / 10), ArrowDown: () => pan(0, -H / 10),
    };
    const act = keys[e.key];
    if (act) {
      e.preventDefault();
      act();
    }
  });
  $("split").addEventListener("input", () => {
    view.split = Number($("split").value) / 100;
    render();
  });
  $("flip").addEventListener("click", flip);
  $("zoom").addEventListener("change", onZoomSelect);
  window.addEventListener("resize", () => {
    if (!$("viewer").hidden) layout();
    drawFollowed();
  });
}

// ---------------------------------------------------------------------------------------- training
function token() {
  return $("token").value.trim();
}

function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token()}`, ...extra };
}

const NOISE = {
  g25: { kind: "gaussian", sigma: 25 },
  "g0-50": { kind: "gaussian", sigma_range: [0, 50] },
  p30: { kind: "poisson", lam: 30 },
};
const RECENT_JOBS = 6;

/** GET /train/statuses, fetched once (again only after a failure): which job statuses are final. */
function loadStatuses() {
  if (!state.statusesReady) {
    state.statusesReady = fetch("/train/statuses").then(async (resp) => {
      if (!resp.ok) throw new Error(await errorText(resp));
      const body = await resp.json();
      if (!body || !Array.isArray(body.statuses) || !Array.isArray(body.final)) {
        throw new Error("GET /train/statuses answered no list of statuses");
      }
      state.statuses = body;
      return body;
    }).catch((e) => {
      state.statusesReady = null;
      throw e;
    });
  }
  return state.statusesReady;
}

/** Whether a job in ``status`` has ended (the API's final statuses: it changes no more unless resumed). */
const isFinal = (status) => Boolean(state.statuses) && state.statuses.final.includes(status);

/** The data the training panel will train on: the dataset's kind ("builtin", "clean" or "pairs"), or "upload"
 * while a zip is picked and not yet sent. */
function dataSource() {
  if ($("zip").files && $("zip").files.length) return "upload";
  const opt = $("dataset").selectedOptions[0];
  return !opt || opt.value === "builtin" ? "builtin" : opt.dataset.kind || "clean";
}

/** The noise model applies to clean photos (noise2noise), and to the built-in photographs with neighbor2neighbor
 * (one draw on each); not to noisy pairs nor to your noisy photos. */
function noiseApplies() {
  const kind = $("data-kind").value;
  if (kind === "pairs") return false;
  if (kind === "singles") return dataSource() === "builtin";
  return dataSource() !== "pairs";
}

/** "Start from" for your noisy photos: a shipped model ("blind", else "default"), unless the user chose one. */
function suggestInit() {
  const init = $("init");
  const singles = $("data-kind").value === "singles";
  if (singles && !init.dataset.touched) {
    const offered = [...init.options].map((o) => o.value);
    const pick = ["blind", "default"].find((id) => offered.includes(id));
    if (pick && init.value !== pick) {
      init.value = pick;
      state.initSuggested = pick;
    }
  } else if (!singles && state.initSuggested && init.value === state.initSuggested && !init.dataset.touched) {
    init.value = "";  // back to the page's default for the other kinds of data
    state.initSuggested = null;
  }
}

/** Show the controls that apply to the kind of data chosen. */
function showDataKind() {
  const applies = noiseApplies();
  $("noise").hidden = !applies;
  $("noise-label").hidden = !applies;
  suggestInit();
}

async function uploadZip(file) {
  say($("train-status"), `Uploading ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  const resp = await fetch("/datasets", { method: "POST", body: form, headers: authHeaders() });
  if (!resp.ok) throw new Error(await errorText(resp));
  const info = await resp.json();
  const opt = document.createElement("option");
  opt.value = info.id;
  opt.textContent = `${file.name} (${info.images} ${info.kind === "pairs" ? "pairs" : "images"})`;
  opt.dataset.kind = info.kind;
  $("dataset").appendChild(opt);
  $("dataset").value = info.id;
  $("zip").value = "";
  showDataKind();
  return info.id;
}

function needToken(what) {
  if (token()) return false;
  say($("train-status"), `Enter the API token (N2N_API_TOKEN) first to ${what}.`, true);
  $("token").focus();
  return true;
}

async function startTraining(ev) {
  ev.preventDefault();
  if (needToken("start training")) return;
  sessionStorage.setItem("n2n-token", token());
  try {
    let dataset = $("dataset").value;
    const zip = $("zip").files[0];
    if (zip) dataset = await uploadZip(zip);
    const singles = $("data-kind").value === "singles";
    const body = { dataset };
    if (singles) body.method = "neighbor2neighbor";  // single noisy photos: no pairs, no clean images
    if (noiseApplies()) body.noise = NOISE[$("noise").value];
    body.steps = Number($("steps").value);
    if ($("init").value) body.init_model = $("init").value;
    const resp = await fetch("/train", { method: "POST", body: JSON.stringify(body),
                                         headers: authHeaders({ "Content-Type": "application/json" }) });
    if (!resp.ok) throw new Error(await errorText(resp));
    const job = await resp.json();
    state.followed = job.id;
    state.points[job.id] = [];
    say($("train-status"), `Job ${job.id} queued.`);
    await refreshJobs();
  } catch (e) {
    say($("train-status"), `Could not start training: ${e.message}`, true);
  }
}

/** "about 45 s left", "about 12 min left", "about 2 h 5 min left" for a running job's ETA. */
function etaText(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  if (s < 60) return `, about ${s} s left`;
  const min = Math.round(s / 60);
  return min < 60 ? `, about ${min} min left` : `, about ${Math.floor(min / 60)} h ${min % 60} min left`;
}

function jobLine(job) {
  const p = job.progress, m = job.metrics || {};
  const psnr = m.val_psnr != null ? `, validation PSNR ${Number(m.val_psnr).toFixed(2)} dB` : "";
  const loss = m.loss != null ? `, loss ${Number(m.loss).toPrecision(3)}` : "";
  const eta = job.status === "running" ? etaText(job.eta_seconds) : "";
  const method = (job.params || {}).method;
  return `Job ${job.id}${method ? ` (${method})` : ""}: ${job.status}, step ${p.step} of ${p.total}${eta}${loss}${psnr}` +
    (job.error ? ` — ${job.error}` : "") + (job.model_id ? ` — model ${job.model_id}` : "");
}

function shownJobs() {
  const active = state.jobs.filter((j) => !isFinal(j.status));
  const recent = state.jobs.filter((j) => isFinal(j.status)).slice(0, Math.max(0, RECENT_JOBS - active.length));
  const list = [...active, ...recent];
  const followed = state.jobs.find((j) => j.id === state.followed);
  if (followed && !list.includes(followed)) list.unshift(followed);
  return list;
}

function jobItem(ul, job) {
  let li = ul.querySelector(`li[data-job="${CSS.escape(job.id)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.job = job.id;
    const text = document.createElement("span");
    text.className = "job-text";
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.setAttribute("aria-label", `progress of job ${job.id}`);
    const actions = document.createElement("div");
    actions.className = "job-actions";
    li.append(text, bar, actions);
  }
  return li;
}

/** The job list, updated in place (a button being clicked is never replaced under the pointer). */
function renderJobs() {
  const ul = $("jobs");
  const list = shownJobs();
  $("jobs-empty").hidden = list.length > 0;
  const items = list.map((job) => {
    const li = jobItem(ul, job);
    li.dataset.status = job.status;
    const params = job.params || {};
    if (params.method) li.dataset.method = params.method;
    li.querySelector(".job-text").title = params.data || "";
    li.classList.toggle("followed", job.id === state.followed);
    li.querySelector(".job-text").textContent = jobLine(job);
    li.querySelector("progress").value = job.progress.fraction;
    const actions = li.querySelector(".job-actions");
    const signature = `${job.status}|${job.id === state.followed}|${job.model_id ? modelName(job.model_id) : ""}`;
    if (actions.dataset.signature !== signature) {
      actions.dataset.signature = signature;
      actions.replaceChildren();
      // each accessible name begins with the button's visible text (axe: label-content-name-mismatch)
      const button = (label, cls, onClick, aria) => actions.appendChild(actionButton(label, cls, onClick, aria));
      if (job.id !== state.followed) button("Show", "show", () => follow(job.id), `Show job ${job.id} in the chart`);
      if (!isFinal(job.status)) button("Cancel", "cancel", () => cancelJob(job.id), `Cancel job ${job.id}`);
      if (job.status === "succeeded" && job.model_id) {
        button("Use this model", "activate", () => activateModel(job.model_id), `Use this model: ${modelName(job.model_id)}`);
      }
    }
    return li;
  });
  items.forEach((li, i) => { if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null); });
  while (ul.children.length > items.length) ul.lastElementChild.remove();
}

function follow(id) {
  state.followed = id;
  renderJobs();
  renderFollowed();
}

function followedJob() {
  return state.jobs.find((j) => j.id === state.followed) || null;
}

function renderFollowed() {
  const job = followedJob();
  if (!job) {
    $("cancel").disabled = true;
    $("activate").disabled = true;
    drawChart([], [], 1);
    return;
  }
  const p = job.progress, m = job.metrics || {};
  $("progress").value = p.fraction;
  const pts = (state.points[job.id] = state.points[job.id] || []);
  if (m.loss != null && (!pts.length || pts[pts.length - 1].step !== p.step)) pts.push({ step: p.step, loss: m.loss });
  // the job's own line is in the list below (once); this caption says which job the chart and the bar show
  say($("train-status"), `In the chart: job ${job.id} (${job.status})`, job.status === "failed");
  $("cancel").disabled = isFinal(job.status);
  $("activate").disabled = !(job.status === "succeeded" && job.model_id);
  drawFollowed();
}

function drawFollowed() {
  const job = followedJob();
  if (!job) {
    drawChart([], [], 1);
    return;
  }
  const history = ((job.metrics || {}).history || []).filter((h) => h && h.step != null);
  const byStep = new Map();
  for (const h of history) if (h.loss != null) byStep.set(h.step, { step: h.step, loss: h.loss });
  for (const p of state.points[job.id] || []) byStep.set(p.step, p);
  const loss = [...byStep.values()].sort((a, b) => a.step - b.step);
  drawChart(loss, history.filter((h) => h.val_psnr != null), job.progress.total || 1);
}

async function refreshJobs() {
  clearTimeout(state.trainTimer);
  try {
    await loadStatuses().catch((e) => { throw new Error(`could not read the job statuses: ${e.message}`); });
    const resp = await fetch("/train", { cache: "no-store" });
    if (!resp.ok) throw new Error(await errorText(resp));
    state.jobs = await resp.json();
    const before = state.modelInfo;
    for (const j of state.jobs) {
      if (j.model_id && !before[j.model_id]) {
        before[j.model_id] = { date: j.finished_at, psnr: j.metrics && j.metrics.val_psnr != null ? j.metrics.val_psnr : null };
        state.modelsStale = true;
      }
    }
    if (!state.followed || !state.jobs.some((j) => j.id === state.followed)) {
      const active = state.jobs.find((j) => !isFinal(j.status));
      state.followed = (active || state.jobs[0] || {}).id || null;
    }
    renderJobs();
    renderFollowed();
    if (state.modelsStale) {
      state.modelsStale = false;
      loadModels();
    }
  } catch (e) {
    say($("train-status"), `Could not list the training jobs: ${e.message}`, true);
  }
  if (state.statuses && state.jobs.some((j) => !isFinal(j.status))) state.trainTimer = setTimeout(refreshJobs, 1000);
}

async function cancelJob(id) {
  if (!id || needToken("cancel a job")) return;
  const resp = await fetch(`/train/${id}/cancel`, { method: "POST", headers: authHeaders() });
  if (!resp.ok) say($("train-status"), `Could not cancel job ${id}: ${await errorText(resp)}`, true);
  await refreshJobs();
}

/** The short label of a model by id ("name · dB"), from the model list or, until it is listed, its job. */
function modelName(id) {
  const m = (state.models || []).find((x) => x.id === id);
  if (m) return modelLabel(m);
  const psnr = (state.modelInfo[id] || {}).psnr;
  return psnr != null ? `${id} · ${Number(psnr).toFixed(2)} dB` : id;
}

/** Ask before switching the model that answers /denoise: the new model's validation PSNR against the active one's,
 * with a warning when it is lower. Resolves true to go on. */
function confirmModel(modelId) {
  const models = state.models || [];
  const next = models.find((m) => m.id === modelId), active = models.find((m) => m.active);
  const nextPsnr = next ? modelFacts(next).psnr : (state.modelInfo[modelId] || {}).psnr ?? null;
  const activePsnr = active ? modelFacts(active).psnr : null;
  const db = (v) => (v == null ? "unknown" : `${Number(v).toFixed(2)} dB`);
  $("confirm-text").textContent = `New model ${modelName(modelId)}: validation PSNR ${db(nextPsnr)}. ` +
    (active ? `Active model ${modelLabel(active)}: validation PSNR ${db(activePsnr)}.` : "No model is active.");
  const warn = $("confirm-warning");
  if (nextPsnr != null && activePsnr != null && nextPsnr < activePsnr) {
    warn.textContent = `Warning: the new model's validation PSNR is ${(activePsnr - nextPsnr).toFixed(2)} dB lower ` +
                       "than the active one's: it is likely to denoise worse.";
    warn.hidden = false;
  } else if (nextPsnr == null) {
    warn.textContent = "Warning: the new model's validation PSNR is unknown.";
    warn.hidden = false;
  } else {
    warn.hidden = true;
  }
  const dialog = $("confirm-model");
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
    $("confirm-no").focus();
  });
}

async function deleteModel(modelId) {
  if (!modelId || needToken("delete a model")) return;
  if (!window.confirm(`Delete model ${modelName(modelId)} and its files? This cannot be undone.`)) return;
  const resp = await fetch(`/models/${encodeURIComponent(modelId)}`, { method: "DELETE", headers: authHeaders() });
  if (!resp.ok && resp.status !== 404) {
    say($("train-status"), `Could not delete model ${modelId}: ${await errorText(resp)}`, true);
    return;
  }
  say($("train-status"), `Model ${modelId} deleted.`);
  if ($("model").value === modelId) delete $("model").dataset.touched;
  await loadModels();
}

async function activateModel(modelId) {
  if (!modelId || needToken("switch models")) return;
  if (!(await confirmModel(modelId))) return;
  const resp = await fetch(`/models/${modelId}/activate`, { method: "POST", headers: authHeaders() });
  if (!resp.ok) {
    say($("train-status"), `Could not activate model ${modelId}: ${await errorText(resp)}`, true);
    return;
  }
  say($("train-status"), `Model ${modelId} now answers /denoise.`);
  delete $("model").dataset.touched;
  await loadModels();
}

/** About ``n`` round values (1, 2 or 5 times a power of ten apart) from lo to hi. */
function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag)
    .reduce((best, st) => (Math.abs(Math.log(st / raw)) < Math.abs(Math.log(best / raw)) ? st : best));
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Ticks of a log10 axis from lo to hi (exponents): 1, 2 and 5 times powers of ten, as exponents. */
function logTicks(lo, hi) {
  const all = [];
  for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) for (const m of [1, 2, 5]) all.push(d + Math.log10(m));
  let ticks = all.filter((v) => v >= lo - 1e-9 && v <= hi + 1e-9);
  if (ticks.length > 7) ticks = ticks.filter((v) => Math.abs(v - Math.round(v)) < 1e-9);
  if (ticks.length < 2) ticks = niceTicks(10 ** lo, 10 ** hi, 4).filter((v) => v > 0).map((v) => Math.log10(v));
  return ticks;
}

/** The chart, drawn at the canvas's displayed size (the card's width) times devicePixelRatio, so its 12-px text
 * stays 12 px on a phone. Real axis ticks: steps along the bottom, loss (log scale) on the left, PSNR on the right,
 * with light grid lines; labels sit outside the plot; a flat series sits mid-height, never on the frame. The
 * plot's rectangle (CSS pixels) is left in data-plot, the tick values in data-ticks. */
function drawChart(lossPts, psnrPts, total = 1) {
  const c = $("chart");
  const d = dpr();
  if (!c.clientWidth) return;  // folded away: drawn when shown
  const cssW = Math.max(1, Math.round(c.clientWidth)), cssH = Math.max(1, Math.round(c.clientHeight || 240));
  if (c.width !== Math.round(cssW * d) || c.height !== Math.round(cssH * d)) {
    c.width = Math.round(cssW * d);
    c.height = Math.round(cssH * d);
  }
  const ctx = c.getContext("2d");
  ctx.setTransform(d, 0, 0, d, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  const range = (pts, key, log) => {
    if (!pts.length) return null;
    const vals = pts.map((p) => (log ? Math.log10(Math.max(p[key], 1e-12)) : p[key]));
    const lo = Math.min(...vals), hi = Math.max(...vals);
    const span = hi - lo;
    const padBy = span > 1e-9 ? span * 0.1 : Math.max(Math.abs(hi) * 0.05, 0.5);
    const r = { vals, dataLo: lo, dataHi: hi, lo: lo - padBy, hi: hi + padBy, log };
    r.ticks = log ? logTicks(r.lo, r.hi) : niceTicks(r.lo, r.hi, 4);
    r.ticks = r.ticks.filter((v) => v >= r.lo && v <= r.hi);
    return r;
  };
  const lossR = range(lossPts, "loss", true), psnrR = range(psnrPts, "val_psnr", false);
  const fmt = (r, v) => {
    if (r.log) return Number((10 ** v).toPrecision(2)).toString();
    const step = r.ticks.length > 1 ? r.ticks[1] - r.ticks[0] : 1;
    return v.toFixed(step >= 1 ? 0 : step >= 0.1 ? 1 : 2);
  };
  const width = (r) => (r ? Math.max(8, ...r.ticks.map((v) => ctx.measureText(fmt(r, v)).width)) : 8);
  const left = Math.ceil(width(lossR)) + 12, right = Math.ceil(width(psnrR)) + 12;
  const top = 10, bottom = 24;
  const plot = { x: left, y: top, w: Math.max(10, cssW - left - right), h: Math.max(10, cssH - top - bottom) };
  c.dataset.plot = JSON.stringify(plot);
  const xTicks = lossPts.length || psnrPts.length ? niceTicks(0, total || 1, Math.max(2, Math.floor(plot.w / 90))) : [];
  c.dataset.ticks = JSON.stringify({ x: xTicks, loss: lossR ? lossR.ticks.map((v) => 10 ** v) : [],
                                     psnr: psnrR ? psnrR.ticks : [] });
  const x = (s) => plot.x + plot.w * Math.min(1, Math.max(0, s / (total || 1)));
  const yOf = (r) => (v) => plot.y + plot.h - plot.h * ((v - r.lo) / (r.hi - r.lo));
  // grid lines and tick marks (light grey), then the frame
  ctx.strokeStyle = "#e6e9ed";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (const t of xTicks) { const px = Math.round(x(t)) + 0.5; ctx.moveTo(px, plot.y); ctx.lineTo(px, plot.y + plot.h + 4); }
  if (lossR) for (const t of lossR.ticks) { const py = Math.round(yOf(lossR)(t)) + 0.5; ctx.moveTo(plot.x - 4, py); ctx.lineTo(plot.x + plot.w, py); }
  if (psnrR) for (const t of psnrR.ticks) { const py = Math.round(yOf(psnrR)(t)) + 0.5; ctx.moveTo(plot.x + plot.w, py); ctx.lineTo(plot.x + plot.w + 4, py); }
  ctx.stroke();
  ctx.strokeStyle = "#d7dbe0";
  ctx.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w - 1, plot.h - 1);
  ctx.fillStyle = "#3d444d";
  xTicks.forEach((t, i) => {
    ctx.textAlign = i === 0 ? "left" : i === xTicks.length - 1 && x(t) > plot.x + plot.w - 20 ? "right" : "center";
    ctx.fillText(i === 0 ? `step ${t}` : `${t}`, x(t), plot.y + plot.h + 13);
  });
  const series = (pts, r, color, side) => {
    if (!r) return;
    const y = yOf(r);
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(p.step), y(r.vals[i])) : ctx.moveTo(x(p.step), y(r.vals[i]))));
    ctx.stroke();
    pts.forEach((p, i) => ctx.fillRect(x(p.step) - 2, y(r.vals[i]) - 2, 4, 4));
    ctx.fillStyle = "#3d444d";
    ctx.textAlign = side === "left" ? "right" : "left";
    const tx = side === "left" ? plot.x - 6 : plot.x + plot.w + 6;
    for (const t of r.ticks) ctx.fillText(fmt(r, t), tx, y(t));
  };
  series(lossPts, lossR, "#0b5fff", "left");
  series(psnrPts, psnrR, "#c2410c", "right");
}

// ---------------------------------------------------------------------------------------- wiring
function loadLimits() {
  state.limitsReady = fetch("/limits").then((r) => (r.ok ? r.json() : null)).catch(() => null)
    .then((lim) => {
      state.limits = lim;
      // the output menu offers what this server writes ("same as the photo" always)
      if (lim && Array.isArray(lim.output_formats)) {
        for (const opt of [...$("format").options]) {
          if (opt.value !== "auto" && !lim.output_formats.includes(opt.value)) opt.remove();
        }
      }
      return lim;
    });
}

document.addEventListener("DOMContentLoaded", () => {
  loadLimits();
  $("photo").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";  // so that picking the same file again is a new pick
    denoise(file);
  });
  $("rerun").addEventListener("click", rerun);
  $("denoise-cancel").addEventListener("click", cancelDenoise);
  $("model").addEventListener("change", () => { $("model").dataset.touched = "1"; rerun(); });
  $("format").addEventListener("change", rerun);
  $("strength").addEventListener("input", showStrength);  // while dragging: the value shown and spoken
  $("strength").addEventListener("change", rerun);        // once set: denoise the same photo again
  showStrength();  // a value the browser restored on reload
  setupViewer();
  $("train-form").addEventListener("submit", startTraining);
  $("data-kind").addEventListener("change", showDataKind);
  $("dataset").addEventListener("change", showDataKind);
  $("zip").addEventListener("change", showDataKind);
  $("init").addEventListener("change", () => { $("init").dataset.touched = "1"; state.initSuggested = null; });
  showDataKind();  // a choice the browser restored on reload
  $("cancel").addEventListener("click", () => cancelJob(state.followed));
  $("activate").addEventListener("click", () => { const j = followedJob(); if (j) activateModel(j.model_id); });
  $("token").value = sessionStorage.getItem("n2n-token") || "";
  setupDrop();
  loadModels();
  fetch("/datasets").then((r) => (r.ok ? r.json() : [])).then((list) => {
    for (const d of list) {
      const opt = document.createElement("option");
      opt.value = d.id;
      opt.textContent = `${d.id} (${d.images} ${d.kind === "pairs" ? "pairs" : "images"})`;
      opt.dataset.kind = d.kind;
      $("dataset").appendChild(opt);
    }
    showDataKind();
  }).catch(() => {});
  drawChart([], [], 1);
  $("training-panel").addEventListener("toggle", drawFollowed);  // a folded chart is drawn when unfolded
  window.addEventListener("pagehide", () => forgetJob(state.run));  // leaving: the server stops the job
  refreshJobs();  // the jobs running or finished before this page was (re)loaded, and their progress
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshJobs(); });
});
