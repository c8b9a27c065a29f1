"use strict";
// Rater page: the token is the URL fragment (#token), sent only as an Authorization header.
(function () {
  const token = decodeURIComponent(location.hash.slice(1));
  const $ = (id) => document.getElementById(id);
  const audio = $("audio");
  const MARK_WINDOW_S = 2.0; // "bad moment" applies to a backchannel that started at most this long ago
  let clips = [], ratings = {}, idx = 0, played = false, blobUrl = null;

  async function api(path, body) {
    const opts = { headers: { Authorization: "Bearer " + token }, cache: "no-store" };
    if (body !== undefined) {
      opts.method = "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    if (res.status === 403) { deny(); throw new Error("forbidden"); }
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || res.statusText);
    return res;
  }

  function deny() { $("rater").hidden = true; $("done").hidden = true; $("denied").hidden = false;
                    $("progress").textContent = ""; }
  const entry = (id) => ratings[id] || (ratings[id] = { timing: null, naturalness: null, bad: [] });
  const complete = (id) => ratings[id] && ratings[id].timing != null && ratings[id].naturalness != null;
  const nDone = () => clips.filter((c) => complete(c.id)).length;
  function status(text, bad) { const s = $("status"); s.textContent = text; s.className = bad ? "error" : ""; }

  function progress() {
    const n = nDone();
    $("progress").textContent = `Clip ${idx + 1} of ${clips.length} \u00b7 ${n} rated`;
    $("bar-fill").style.width = (100 * n / Math.max(clips.length, 1)) + "%";
  }

  function buildScales() {
    document.querySelectorAll(".scale").forEach((div) => {
      for (let v = 1; v <= 5; v++) {
        const b = document.createElement("button");
        b.type = "button"; b.className = "score"; b.textContent = v;
        b.dataset.scale = div.dataset.scale; b.dataset.value = v;
        b.addEventListener("click", () => rate(div.dataset.scale, v));
        div.appendChild(b);
      }
    });
  }

  function render() {
    const clip = clips[idx], r = entry(clip.id);
    document.querySelectorAll(".score").forEach((b) => {
      b.classList.toggle("selected", r[b.dataset.scale] === Number(b.dataset.value));
    });
    const ok = played || complete(clip.id) || r.timing != null || r.naturalness != null;
    $("timing-set").disabled = !ok; $("naturalness-set").disabled = !ok;
    $("next").disabled = !complete(clip.id);
    $("prev").disabled = idx === 0;
    document.querySelectorAll(".marker").forEach((m) => {
      m.classList.toggle("bad", r.bad.includes(Number(m.dataset.bc)));
    });
    progress();
  }

  async function show(i) {
    idx = i; played = false;
    const clip = clips[idx];
    $("rater").hidden = false; $("done").hidden = true;
    audio.pause();
    const tl = $("timeline");
    tl.querySelectorAll(".marker").forEach((m) => m.remove());
    clip.backchannels.forEach((t, k) => {
      const m = document.createElement("button");
      m.type = "button"; m.className = "marker"; m.dataset.bc = k;
      m.style.left = (100 * t / clip.duration) + "%";
      m.title = `listener sound at ${t.toFixed(1)} s`;
      m.addEventListener("click", () => toggleMark(k));
      tl.appendChild(m);
    });
    $("playhead").style.left = "0%"; $("clock").textContent = "0.0 s";
    status("loading audio...");
    $("play").disabled = true;
    render();
    const res = await api("/api/audio/" + encodeURIComponent(clip.id));
    if (blobUrl) URL.revokeObjectURL(blobUrl);
    blobUrl = URL.createObjectURL(await res.blob());
    audio.src = blobUrl;
    $("play").disabled = false;
    status("");
  }

  async function rate(scale, value) {
    const clip = clips[idx];
    status("saving...");
    try {
      const res = await api("/api/rating", { clip: clip.id, [scale]: value });
      const row = await res.json();
      Object.assign(entry(clip.id), { timing: row.timing, naturalness: row.naturalness });
      status("saved");
    } catch (e) { status("not saved: " + e.message, true); }
    render();
  }

  async function toggleMark(k) {
    const clip = clips[idx], r = entry(clip.id), bad = !r.bad.includes(k);
    try {
      await api("/api/mark", { clip: clip.id, bc: k, bad: bad });
      r.bad = bad ? r.bad.concat([k]) : r.bad.filter((x) => x !== k);
      status(bad ? "marked as a bad moment" : "mark removed");
    } catch (e) { status("not saved: " + e.message, true); }
    render();
  }

  function markNow() {
    const clip = clips[idx], t = audio.currentTime;
    let k = -1;
    clip.backchannels.forEach((b, i) => { if (b <= t && t - b <= MARK_WINDOW_S) k = i; });
    if (k < 0) { status("no listener sound in the last 2 s"); return; }
    if (!entry(clip.id).bad.includes(k)) toggleMark(k);
  }

  function nextUnrated(from) {
    for (let j = 0; j < clips.length; j++) {
      const i = (from + j) % clips.length;
      if (!complete(clips[i].id)) return i;
    }
    return -1;
  }

  function finish() { audio.pause(); $("rater").hidden = true; $("done").hidden = false; progress();
                      $("progress").textContent = `All ${clips.length} clips rated`; }

  $("play").addEventListener("click", () => {
    if (audio.paused) { audio.play().catch((e) => status("cannot play: " + e.message, true)); }
    else audio.pause();
  });
  audio.addEventListener("play", () => { $("play").textContent = "Pause"; $("badnow").disabled = false; });
  audio.addEventListener("pause", () => { $("play").textContent = "Play"; $("badnow").disabled = true; });
  audio.addEventListener("ended", () => { played = true; status("now rate the clip"); render(); });
  audio.addEventListener("timeupdate", () => {
    const d = clips[idx].duration;
    $("playhead").style.left = Math.min(100, 100 * audio.currentTime / d) + "%";
    $("clock").textContent = audio.currentTime.toFixed(1) + " s";
  });
  $("badnow").addEventListener("click", markNow);
  document.addEventListener("keydown", (e) => { if ((e.key === "b" || e.key === "B") && !audio.paused) markNow(); });
  $("next").addEventListener("click", () => {
    const i = nextUnrated(idx + 1);
    if (i < 0) finish(); else show(i);
  });
  $("prev").addEventListener("click", () => { if (idx > 0) show(idx - 1); });
  $("review").addEventListener("click", () => show(0));

  async function start() {
    if (!token) { deny(); return; }
    const res = await api("/api/session");
    const s = await res.json();
    clips = s.clips; ratings = s.ratings;
    buildScales();
    const i = nextUnrated(0);
    if (i < 0) finish(); else show(i);
  }
  start().catch((e) => { if (e.message !== "forbidden") status("error: " + e.message, true); });
})();
