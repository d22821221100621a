// reckon's dashboard (docs/dashboard.md).
"use strict";
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => "&#" + c.charCodeAt(0) + ";");
const tr = (cells, th) => "<tr>" + cells.map((c) => (th ? "<th>" : "<td>") + c).join("") + "</tr>";
const secs = (iso) => Date.parse(iso) / 1000;
const warn = (s) => '<span class="warn">' + esc(s) + "</span>";
let token = localStorage.getItem("reckon-token") || "";
const hdr = () => (token ? { Authorization: "Bearer " + token } : {});
$("tok").onclick = () => {
	const t = prompt("reckon token (empty for none)", token);
	if (t !== null) { localStorage.setItem("reckon-token", t); location.reload(); }
};
async function get(path, text) {
	const r = await fetch(path, { headers: hdr() });
	if (r.status === 401) throw Error("a token is needed");
	if (!r.ok) throw Error(path + ": " + r.status);
	return text ? r.text() : r.json();
}
// Every page of a windows query.
async function all(url) {
	const out = [];
	for (let next = ""; ; ) {
		const r = await get(url + (next ? "&cursor=" + enc(next) : ""));
		for (const e of r.windows) out.push(e);
		if (!(next = r.next)) return out;
	}
}

// ---- overview, every 2 s
let before = {}, beforeAt = 0;
const lab = (l, k) => ((new RegExp(k + '="([^"]*)"')).exec(l) || [])[1];
async function overview() {
	const [p, text] = await Promise.all([get("/v1/pipelines"), get("/metrics", true)]);
	const m = [], now = {}, at = Date.now(), dt = (at - beforeAt) / 1e3;
	for (const l of text.split("\n")) {
		const x = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(l);
		if (x) m.push({ n: x[1], l: x[2] || "", v: +x[3] });
	}
	const of = (n, pl) => m.filter((x) => x.n === n && lab(x.l, "pipeline") === pl);
	const sum = (n, pl) => of(n, pl).reduce((a, x) => a + x.v, 0);
	let rows = tr(["pipeline", "kind", "watermark", "lag per partition", "late events/s", "dead letters"], true);
	for (const x of p.pipelines) {
		const late = (now[x.name] = sum("reckon_events_late_applied_total", x.name));
		const dead = sum("reckon_events_dead_lettered_total", x.name);
		const parts = of("reckon_partition_watermark_seconds", x.name).map((y) => lab(y.l, "partition") + ": " + (Date.now() / 1e3 - y.v).toFixed(0) + " s");
		rows += tr([esc(x.name), esc(x.kind), esc(x.watermark || "–"), esc(parts.join(", ")),
			x.name in before ? ((late - before[x.name]) / dt).toFixed(1) : "", dead ? warn(dead) : "0"]);
		if (x.name === S.pipe && x.watermark && !S.asOf) S.wm = Math.max(S.wm, secs(x.watermark));
	}
	before = now;
	beforeAt = at;
	$("pipes").innerHTML = rows;
	let prev = 0, bars = "";
	const b = m.filter((x) => x.n === "reckon_correction_latency_seconds_bucket");
	const total = Math.max(1, (b[b.length - 1] || { v: 0 }).v);
	for (const x of b) {
		const le = lab(x.l, "le"), n = x.v - prev;
		prev = x.v;
		bars += `<div style="height:${(60 * n) / total}px" title="${n} ≤ ${le} s"><span>${le === "+Inf" ? "∞" : le}</span></div>`;
	}
	$("hist").innerHTML = bars || "no corrections yet";
	let conns = tr(["name", "kind", "state", "position / cursor", "error"], true);
	for (const f of ["sources", "sinks", "webhooks"]) {
		try {
			for (const s of (await get("/v1/" + f))[f] || []) conns += tr([esc(s.name), f.slice(0, -1) + " " + esc(s.kind || ""),
				esc(s.state || ""), esc(s.cursor ?? s.position ?? JSON.stringify(s.positions ?? "")), s.error ? warn(s.error) : ""]);
		} catch (e) { /* not an operator */ }
	}
	$("conns").innerHTML = conns;
	await sample();
	$("status").textContent = "up to date " + new Date().toLocaleTimeString();
}

// ---- one key's windows
// wins: the key's windows by start; eps: an alert rule's episodes of every key;
// rt: a running total's [time, reconciled, real-time] samples; wm: the newest watermark.
const S = { pipe: "", key: "", col: "", kinds: {}, wins: new Map(), eps: new Map(), rt: [[], [], []], wm: 0, ch: 0, gen: 0, first: Infinity, pending: [], dirty: new Set(), asOf: null, plot: null, rtPlot: null, abort: null, revised: [] };
const api = () => "/v1/pipelines/" + enc(S.pipe);
const kind = () => S.kinds[S.pipe];
// Revised: a version after the result was out, or an episode found by a correction.
const rev = (e) => /^(late|recomputed|retracted)$/.test(e.kind) || e.values.late === true;
function value(e) {
	const v = e.values[S.col];
	return typeof v === "number" ? v : null;
}
function reset() {
	if (S.plot) S.plot.destroy();
	S.plot = null;
}
function draw() {
	const ws = [...S.wins.values()].sort((a, b) => a.t - b.t);
	const xs = ws.map((w) => w.t), ys = ws.map((w) => value(w.e)), rv = ws.map((w) => (rev(w.e) ? value(w.e) : null));
	if (!S.plot) {
		S.plot = new uPlot({
			width: Math.min(1100, innerWidth - 40), height: 320,
			series: [{}, { label: S.col, stroke: "#457b9d", points: { show: true, size: 5 } },
				{ label: "revised", stroke: "#e63946", paths: () => null, points: { show: true, size: 11, fill: "#e63946" } }],
		}, [xs, ys, rv], $("chart"));
		S.plot.over.onclick = safe(async () => {
			const t = S.plot.data[0][S.plot.cursor.idx];
			if (t != null) await hist(S.key, [...S.wins.values()].find((w) => w.t === t));
		});
	} else S.plot.setData([xs, ys, rv]);
}
function line(e, prev) {
	const why = e.kind === "on_time" ? "" : " (" + e.kind + (e.values.late ? ", late" : "") + ")";
	return `v${e.version}${esc(why)}: ${prev ? value(prev) + " → " : ""}${value(e)} · count ${e.count} · at ${esc(e.emitted_at)}`;
}
// A window's revision history, and what its kind adds.
async function hist(key, w) {
	if (!w) return;
	const st = w.e.window.start, r = await get(`${api()}/history?key=${enc(key)}&start=${enc(st)}&limit=1000`);
	let h = `<b>${esc(key)} ${esc(st)}</b> ${line(w.e, w.prev)}<table>` + tr(["version", "why", "value", "count", "known at"], true) +
		r.versions.map((v, j) => tr([v.version, esc(v.kind), (j ? value(r.versions[j - 1]) + " → " : "") + value(v), v.count, esc(v.emitted_at)])).join("") + "</table>";
	if (kind() === "reconcile" && !key) {
		const p = await get(`${api()}/windows?from=${enc(st)}&to=${enc(w.e.window.end)}&limit=10000`);
		const ids = (k) => p.windows.filter((x) => x.kind === k).map((x) => esc(x.key.slice(3))).join(", ") || "none";
		h += `<p>missing: ${ids("missing")}<br>found late: ${ids("found")}</p>`;
	}
	if (kind() === "running_total") {
		const t = await get(`${api()}/total?key=${enc(key)}`);
		h += `<p>now: reconciled ${t.value}, real-time ${t.real_time} (difference ${t.difference})</p>`;
	}
	$("detail").innerHTML = h;
}
async function load() {
	// A newer load draws instead; live changes wait in S.pending meanwhile.
	const gen = ++S.gen, k = kind(), q = (S.asOf ? "&as_of=" + enc(S.asOf) : "") + "&limit=10000";
	let ws, eps;
	S.loading = true;
	try {
		ws = await all(`${api()}/windows?key=${enc(S.key)}` + q);
		eps = k === "alert" ? await all(api() + "/windows?" + q) : [];
	} finally { if (gen === S.gen) S.loading = false; }
	if (gen !== S.gen) return;
	S.wins = new Map(ws.map((e) => [e.window.start, { t: secs(e.window.start), e, prev: null }]));
	const e = ws[0], cols = e ? Object.keys(e.values).filter((c) => typeof e.values[c] === "number") : [];
	if (!cols.includes(S.col)) {
		$("col").innerHTML = cols.map((c) => `<option>${esc(c)}</option>`).join("");
		S.col = cols.includes("value") ? "value" : cols[0] || "";
	}
	S.eps = new Map();
	S.wm = 0;
	eps.forEach(keep);
	if (!S.asOf) S.first = least([...ws, ...eps].map((e) => Date.parse(e.emitted_at)));
	reset();
	draw();
	if (k === "alert") timeline();
	const p = S.pending;
	S.pending = [];
	p.forEach(change);
	await sample();
}
const least = (xs) => xs.reduce((a, x) => Math.min(a, x), Infinity);
const most = (xs) => xs.reduce((a, x) => Math.max(a, x), -Infinity);
// The change feed, by fetch (the token goes in a header): the key's, or an alert
// rule's whole feed for its timeline. Resolves once the server follows it (then the
// windows are read: nothing falls between); reconnects after the last change it had.
async function follow(since) {
	if (S.abort) S.abort.abort();
	const ac = (S.abort = new AbortController()), ch = S.ch;
	S.live = false;
	const r = await fetch(api() + "/changes?" + (kind() === "alert" ? "" : "key=" + enc(S.key)) + (since ? "&since=" + since : ""),
		{ headers: { ...hdr(), Accept: "text/event-stream" }, signal: ac.signal });
	if (!r.ok) throw Error("the change feed: " + r.status);
	S.live = true;
	(async () => {
		const rd = r.body.getReader(), dec = new TextDecoder();
		let buf = "";
		for (;;) {
			const { value: chunk, done } = await rd.read();
			if (done) throw Error("the change feed ended");
			buf += dec.decode(chunk, { stream: true });
			let i;
			while ((i = buf.indexOf("\n\n")) >= 0) {
				const msg = buf.slice(0, i), id = /^id: ?(\d+)/m.exec(msg);
				buf = buf.slice(i + 2);
				const data = msg.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
				if (id) since = id[1];
				if (data && msg.includes("event: emission")) change(JSON.parse(data));
			}
		}
	})().catch((e) => {
		if (ac.signal.aborted || ch !== S.ch) return;
		$("status").textContent = e.message + ": reconnecting";
		S.reconnects = (S.reconnects || 0) + 1;
		// After the last change it had; without one, the windows are read again.
		const again = () => ch === S.ch && follow(since).then(() => since || load(), () => setTimeout(again, 2000));
		setTimeout(again, 1000);
	});
}
function change(e) {
	if (S.asOf || e.pipeline !== S.pipe) return;
	if (S.loading) return S.pending.push(e);
	keep(e);
	if (kind() === "alert") redraw(e.key);
	const w = S.wins.get(e.window.start);
	if (e.key !== S.key || (w && w.e.version >= e.version)) return;
	S.wins.set(e.window.start, { t: secs(e.window.start), e, prev: w ? w.e : null });
	if (rev(e)) S.revised.push({ start: e.window.start, version: e.version, at: Date.now() });
	draw();
	$("detail").innerHTML = `<span class="flash">${esc(e.window.start)} ${line(e, w && w.e)}</span>`;
	safe(sample)();
}

// ---- an alert rule's timeline: every key's episodes as bars in event time
function keep(e) {
	S.wm = Math.max(S.wm, secs(e.watermark));
	if (kind() !== "alert") return;
	const k = e.key + " " + e.window.start, o = S.eps.get(k);
	if (!o || o.version < e.version) S.eps.set(k, e);
}
// At most once a frame, and only the rows of the keys that changed.
function redraw(key) {
	S.dirty.add(key);
	S.raf = S.raf || requestAnimationFrame(() => {
		const d = S.dirty;
		S.raf = 0;
		S.dirty = new Set();
		d.forEach((k) => timeline(k));
	});
}
// Every key's episodes (or, when the time range is unchanged, one key's row again).
function timeline(only) {
	// A firing episode lasts until the watermark; a retracted one is drawn over its window.
	const eps = [...S.eps.values()], end = (e) => (e.values.resolved_at ? secs(e.values.resolved_at) : Math.max(e.kind === "retracted" ? 0 : S.wm, secs(e.window.end)));
	const x0 = least(eps.map((e) => secs(e.window.start))), span = most(eps.map(end)) - x0 || 1;
	const pc = (t) => ((100 * (t - x0)) / span).toFixed(2) + "%";
	const bar = (e) => {
		const a = secs(e.window.start), st = e.kind === "retracted" ? "retracted" : e.values.resolved_at ? "resolved" : "firing";
		return `<i class="${st}${e.values.late ? " late" : ""}" style="left:${pc(a)};width:${pc(x0 + Math.max(end(e) - a, span / 300))}" data-k="${esc(e.key)}" data-s="${esc(e.window.start)}" ` +
			`title="${esc(e.window.start + (st === "resolved" ? " → " + e.values.resolved_at : "") + ": " + st + (e.values.late ? ", found late" : "") + ", v" + e.version)}"></i>`;
	};
	const range = x0 + "/" + span, row = only !== undefined && range === S.range && [...document.querySelectorAll("#extra .row")].find((r) => r.dataset.k === only);
	if (row) return void (row.lastChild.innerHTML = eps.filter((e) => e.key === only).map(bar).join(""));
	S.range = range;
	const by = new Map();
	for (const e of eps) (by.get(e.key) || by.set(e.key, []).get(e.key)).push(e);
	let h = "";
	for (const key of [...by.keys()].sort()) h += `<div class="row" data-k="${esc(key)}"><span>${esc(key)}</span><div>${by.get(key).map(bar).join("")}</div></div>`;
	const iso = (t) => new Date(t * 1e3).toISOString();
	$("extra").innerHTML = eps.length ? "<h3>Episodes (red firing, grey resolved, hollow retracted, outlined found late)</h3>" + h +
		`<div class="axis"><p>${iso(x0)}</p><p>${iso(x0 + span)}</p></div>` : "";
}
const safe = (f) => (...a) => f(...a).catch((e) => ($("status").textContent = e.message));
$("extra").onclick = safe(async (ev) => {
	const d = ev.target.dataset, e = S.eps.get(d.k + " " + d.s);
	if (e) await hist(d.k, { e, prev: null });
});

// ---- a running total: the reconciled total beside the real-time counter, sampled
// (one request at a time; the last hour at a sample each 2 s)
async function sample() {
	if (kind() !== "running_total" || S.asOf || !S.key || S.sampling) return;
	const ch = S.ch;
	S.sampling = true;
	try {
		const t = await get(`${api()}/total?key=${enc(S.key)}`);
		if (ch !== S.ch) return;
		[Date.now() / 1e3, t.value, t.real_time].forEach((v, i) => S.rt[i].push(v) > 1800 && S.rt[i].shift());
		if (!S.rtPlot) {
			$("extra").innerHTML = "<h3>Now, reconciled and real-time (sampled while this key is shown)</h3>";
			S.rtPlot = new uPlot({
				width: Math.min(1100, innerWidth - 40), height: 200,
				series: [{}, { label: "reconciled", stroke: "#457b9d" }, { label: "real-time", stroke: "#e63946", dash: [6, 4] }],
			}, S.rt, $("extra"));
		} else S.rtPlot.setData(S.rt);
	} finally { S.sampling = false; }
}

const opts = (xs) => xs.map((x) => `<option value="${esc(x)}">${esc(x)}</option>`).join("");
async function pick() {
	const ch = ++S.ch;
	S.pipe = $("pipe").value;
	S.col = "";
	const r = await get(`${api()}/windows?limit=1000`);
	if (ch !== S.ch) return;
	$("key").innerHTML = opts([...new Set(r.windows.map((e) => e.key))]);
	await pickKey();
}
async function pickKey() {
	S.ch++;
	S.key = $("key").value;
	if (S.rtPlot) S.rtPlot.destroy();
	S.rtPlot = null;
	S.rt = [[], [], []];
	S.wins = new Map();
	S.eps = new Map();
	$("extra").innerHTML = "";
	await follow().catch((e) => ($("status").textContent = e.message));
	await load();
}
// The slider: first result (+1 ms: ours are ms, the server's ns) to now.
$("asof").oninput = () => {
	const v = +$("asof").value, first = 1 + S.first;
	S.asOf = v >= 1000 || !isFinite(first) ? null : new Date(first + ((Date.now() - first) * v) / 1000).toISOString();
	$("asofl").textContent = S.asOf ? S.asOf + " (as known then)" : "now (live)";
	clearTimeout(S.slide);
	S.slide = setTimeout(safe(load), 100);
};
$("pipe").onchange = safe(pick);
$("key").onchange = safe(pickKey);
$("col").onchange = () => { S.col = $("col").value; reset(); draw(); };
// For tests.
window.reckon = { state: S, points: () => S.wins.size, revised: () => S.revised, episodes: () => [...S.eps.values()] };
(async () => {
	const p = await get("/v1/pipelines");
	p.pipelines.forEach((x) => (S.kinds[x.name] = x.kind));
	$("pipe").innerHTML = opts(p.pipelines.map((x) => x.name));
	const tick = () => overview().catch((e) => ($("status").textContent = e.message)).then(() => setTimeout(tick, 2000));
	await tick();
	// Unless a choice was made meanwhile.
	if ($("pipe").value && !S.ch) await pick();
})().catch((e) => ($("status").textContent = e.message));
