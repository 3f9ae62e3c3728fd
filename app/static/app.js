"use strict";
// n2n web page: denoise a photo and compare, train a model and watch it learn. No external requests.

const $ = (id) => document.getElementById(id);
const state = { inputUrl: null, outputUrl: null, name: "photo", job: null, points: [], timer: null };

function say(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    const d = body.detail;
    return typeof d === "string" ? d : JSON.stringify(d);
  } catch (e) {
    return resp.statusText || `HTTP ${resp.status}`;
  }
}

// ---------------------------------------------------------------------------------------- models
async function loadModels() {
  const sel = $("model");
  try {
    const resp = await fetch("/models");
    if (!resp.ok) throw new Error(await errorText(resp));
    const body = await resp.json();
    sel.innerHTML = "";
    const init = $("init");
    const chosen = init.value;
    init.length = 1;  // keep "a fresh network"
    for (const m of body.models) {
      const start = document.createElement("option");
      start.value = m.id;
      start.textContent = m.id;
      start.selected = m.id === chosen;
      init.appendChild(start);
      const opt = document.createElement("option");
      opt.value = m.id;
      const arch = m.card && m.card.architecture ? ` (${m.card.architecture})` : "";
      opt.textContent = m.id + arch + (m.active ? " — active" : "");
      opt.selected = m.active;
      sel.appendChild(opt);
    }
  } catch (e) {
    say($("status"), `Could not list models: ${e.message}`, true);
  }
}

// ---------------------------------------------------------------------------------------- denoise
async function denoiseFile(file) {
  if (!file) return;
  state.name = file.name.replace(/\.[^.]+$/, "") || "photo";
  if (state.inputUrl) URL.revokeObjectURL(state.inputUrl);
  state.inputUrl = URL.createObjectURL(file);
  say($("status"), `Denoising ${file.name} (${(file.size / 1e6).toFixed(1)} MB)…`);
  const fmt = $("format").value;
  const params = new URLSearchParams({ format: fmt });
  if ($("model").value) params.set("model", $("model").value);
  const form = new FormData();
  form.append("file", file);
  const t0 = performance.now();
  let resp;
  try {
    resp = await fetch(`/denoise?${params}`, { method: "POST", body: form });
  } catch (e) {
    say($("status"), `The service could not be reached: ${e.message}`, true);
    return;
  }
  if (!resp.ok) {
    const detail = await errorText(resp);
    const what = { 400: "This file is not a readable image", 413: "This photo is too large",
                   415: "This file type is not supported", 503: "The service is busy; try again in a moment" }[resp.status];
    say($("status"), `${what || "Denoising failed"}: ${detail}`, true);
    return;
  }
  const blob = await resp.blob();
  if (state.outputUrl) URL.revokeObjectURL(state.outputUrl);
  state.outputUrl = URL.createObjectURL(blob);
  const before = $("before"), after = $("after");
  await Promise.all([loadImg(after, state.outputUrl), loadImg(before, state.inputUrl)]);
  const dl = $("download");
  dl.href = state.outputUrl;
  dl.download = `${state.name}-denoised.${fmt === "jpeg" ? "jpg" : fmt}`;
  $("viewer").hidden = false;
  applyZoom();
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  say($("status"), `Done in ${secs} s with model ${resp.headers.get("X-Model-Id") || "?"}: ` +
      `${after.naturalWidth}×${after.naturalHeight} pixels.`);
}

function loadImg(img, url) {
  return new Promise((resolve) => {
    img.onload = () => resolve();
    img.onerror = () => resolve();
    img.src = url;
  });
}

function applyZoom() {
  const z = $("zoom").value, stage = $("stage"), frame = $("frame");
  const after = $("after"), before = $("before");
  stage.classList.toggle("fit", z === "fit");
  frame.classList.toggle("pixelated", z !== "fit" && Number(z) >= 2);
  if (z === "fit") {
    after.style.width = "";
  } else {
    after.style.width = `${after.naturalWidth * Number(z)}px`;
  }
  before.style.width = `${after.getBoundingClientRect().width}px`;
  applySplit();
}

function applySplit() {
  const v = Number($("split").value);
  $("before-clip").style.width = `${v}%`;
  $("line").style.left = `${v}%`;
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
    if (file) denoiseFile(file);
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
  $("dataset").appendChild(opt);
  $("dataset").value = info.id;
  $("zip").value = "";
  return info.id;
}

async function startTraining(ev) {
  ev.preventDefault();
  if (!token()) {
    say($("train-status"), "Enter the API token (N2N_API_TOKEN) first.", true);
    $("token").focus();
    return;
  }
  sessionStorage.setItem("n2n-token", token());
  try {
    let dataset = $("dataset").value;
    const zip = $("zip").files[0];
    if (zip) dataset = await uploadZip(zip);
    const body = { dataset, noise: NOISE[$("noise").value], steps: Number($("steps").value) };
    if ($("init").value) body.init_model = $("init").value;
    const resp = await fetch("/train", { method: "POST", body: JSON.stringify(body),
                                         headers: authHeaders({ "Content-Type": "application/json" }) });
    if (!resp.ok) throw new Error(await errorText(resp));
    const job = await resp.json();
    state.job = job;
    state.points = [];
    $("cancel").disabled = false;
    $("activate").disabled = true;
    $("start").disabled = true;
    say($("train-status"), `Job ${job.id} queued.`);
    poll();
  } catch (e) {
    say($("train-status"), `Could not start training: ${e.message}`, true);
  }
}

async function poll() {
  clearTimeout(state.timer);
  if (!state.job) return;
  try {
    const resp = await fetch(`/train/${state.job.id}`);
    if (!resp.ok) throw new Error(await errorText(resp));
    const job = await resp.json();
    state.job = job;
    const p = job.progress, m = job.metrics || {};
    $("progress").value = p.fraction;
    if (m.loss != null && (!state.points.length || state.points[state.points.length - 1].step !== p.step)) {
      state.points.push({ step: p.step, loss: m.loss });
    }
    drawChart(state.points, (m.history || []).filter((h) => h.val_psnr != null));
    const psnr = m.val_psnr != null ? `, validation PSNR ${m.val_psnr.toFixed(2)} dB` : "";
    const loss = m.loss != null ? `, loss ${Number(m.loss).toPrecision(3)}` : "";
    const done = ["succeeded", "failed", "cancelled"].includes(job.status);
    say($("train-status"), `Job ${job.id}: ${job.status}, step ${p.step} of ${p.total}${loss}${psnr}` +
        (job.error ? ` — ${job.error}` : "") + (job.model_id ? ` — model ${job.model_id}` : ""), job.status === "failed");
    if (done) {
      $("cancel").disabled = true;
      $("start").disabled = false;
      $("activate").disabled = job.status !== "succeeded";
      return;
    }
  } catch (e) {
    say($("train-status"), `Lost track of the job: ${e.message}`, true);
  }
  state.timer = setTimeout(poll, 1000);
}

async function cancelTraining() {
  if (!state.job) return;
  const resp = await fetch(`/train/${state.job.id}/cancel`, { method: "POST", headers: authHeaders() });
  if (!resp.ok) say($("train-status"), `Could not cancel: ${await errorText(resp)}`, true);
  poll();
}

async function activateModel() {
  if (!state.job || !state.job.model_id) return;
  const resp = await fetch(`/models/${state.job.model_id}/activate`, { method: "POST", headers: authHeaders() });
  if (!resp.ok) {
    say($("train-status"), `Could not activate: ${await errorText(resp)}`, true);
    return;
  }
  say($("train-status"), `Model ${state.job.model_id} now answers /denoise.`);
  await loadModels();
}

function drawChart(lossPts, psnrPts) {
  const c = $("chart"), ctx = c.getContext("2d");
  const W = c.width, H = c.height, pad = 36;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#5b6470";
  ctx.fillText("loss (blue, log scale) and validation PSNR (orange) by step", pad, 14);
  const total = (state.job && state.job.progress.total) || 1;
  const x = (s) => pad + (W - 2 * pad) * (s / total);
  const series = (pts, key, color, logScale) => {
    if (!pts.length) return;
    const vals = pts.map((p) => (logScale ? Math.log10(p[key]) : p[key]));
    const lo = Math.min(...vals), hi = Math.max(...vals), span = hi - lo || 1;
    const y = (v) => H - pad - (H - 2 * pad) * ((v - lo) / span);
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(p.step), y(vals[i])) : ctx.moveTo(x(p.step), y(vals[i]))));
    ctx.stroke();
    pts.forEach((p, i) => ctx.fillRect(x(p.step) - 2, y(vals[i]) - 2, 4, 4));
    ctx.fillText(`${(logScale ? 10 ** hi : hi).toPrecision(3)}`, key === "loss" ? 2 : W - pad + 2, y(hi) + 4);
    ctx.fillText(`${(logScale ? 10 ** lo : lo).toPrecision(3)}`, key === "loss" ? 2 : W - pad + 2, y(lo) + 4);
  };
  ctx.strokeStyle = "#d7dbe0";
  ctx.strokeRect(pad, pad, W - 2 * pad, H - 2 * pad);
  series(lossPts, "loss", "#0b5fff", true);
  series(psnrPts, "val_psnr", "#e8710a", false);
}

// ---------------------------------------------------------------------------------------- wiring
document.addEventListener("DOMContentLoaded", () => {
  $("photo").addEventListener("change", (e) => denoiseFile(e.target.files[0]));
  $("split").addEventListener("input", applySplit);
  $("zoom").addEventListener("change", applyZoom);
  window.addEventListener("resize", () => { if (!$("viewer").hidden) applyZoom(); });
  $("train-form").addEventListener("submit", startTraining);
  $("cancel").addEventListener("click", cancelTraining);
  $("activate").addEventListener("click", activateModel);
  $("token").value = sessionStorage.getItem("n2n-token") || "";
  setupDrop();
  loadModels();
  fetch("/datasets").then((r) => (r.ok ? r.json() : [])).then((list) => {
    for (const d of list) {
      const opt = document.createElement("option");
      opt.value = d.id;
      opt.textContent = `${d.id} (${d.images} ${d.kind === "pairs" ? "pairs" : "images"})`;
      $("dataset").appendChild(opt);
    }
  }).catch(() => {});
  drawChart([], []);
});
