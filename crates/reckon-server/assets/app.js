// reckon's dashboard (docs/dashboard.md).
"use strict";
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => "&#" + c.charCodeAt(0) + ";");
const tr = (cells, th) => "<tr>" + cells.map((c) => (th ? "<th>" : "<td>") + c).join("") + "</tr>";
const secs = (iso) => Date.parse(iso) / 1000;
let token = localStorage.getItem("reckon-token") || "";
const hdr = () => (token ? { Authorization: "Bearer " + token } : {});
function ask() {
	const t = prompt("reckon token (empty for none)", token);
	if (t !== null) { token = t; localStorage.setItem("reckon-token", t); location.reload(); }
}
$("tok").onclick = ask;
async function get(path, text) {
	const r = await fetch(path, { headers: hdr() });
	if (r.status === 401) throw Error("a token is needed");
	if (!r.ok) throw Error(path + ": " + r.status);
	return text ? r.text() : r.json();
}

// ---- overview, every 2 s
let before = {};
function prom(text) {
	const out = [];
	for (const l of text.split("\n")) {
		const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(l);
		if (m) out.push({ n: m[1], l: m[2] || "", v: +m[3] });
	}
	return out;
}
const lab = (l, k) => ((new RegExp(k + '="([^"]*)"')).exec(l) || [])[1];
async function overview() {
	const [p, text] = await Promise.all([get("/v1/pipelines"), get("/metrics", true)]);
	const m = prom(text), now = {};
	const sum = (n, pl) => m.filter((x) => x.n === n && lab(x.l, "pipeline") === pl).reduce((a, x) => a + x.v, 0);
	let rows = tr(["pipeline", "kind", "watermark", "lag per partition", "late events/s", "dead letters"], true);
	for (const x of p.pipelines) {
		const late = sum("reckon_events_late_applied_total", x.name);
		now[x.name] = late;
		const rate = before[x.name] === undefined ? "" : ((late - before[x.name]) / 2).toFixed(1);
		const dead = sum("reckon_events_dead_lettered_total", x.name);
		const parts = m.filter((y) => y.n === "reckon_partition_watermark_seconds" && lab(y.l, "pipeline") === x.name)
			.map((y) => lab(y.l, "partition") + ": " + (Date.now() / 1e3 - y.v).toFixed(0) + " s");
		rows += tr([esc(x.name), esc(x.kind), esc(x.watermark || "–"), esc(parts.join(", ")), rate,
			dead ? '<span class="warn">' + dead + "</span>" : "0"]);
	}
	before = now;
	$("pipes").innerHTML = rows;
	const b = m.filter((x) => x.n === "reckon_correction_latency_seconds_bucket");
	let prev = 0, bars = "";
	const total = Math.max(1, (b[b.length - 1] || { v: 0 }).v);
	for (const x of b) {
		const le = lab(x.l, "le"), n = x.v - prev;
		prev = x.v;
		bars += `<div style="height:${(60 * n) / total}px" title="${n} ≤ ${le} s"><span>${le === "+Inf" ? "∞" : le}</span></div>`;
	}
	$("hist").innerHTML = bars || "no corrections yet";
	let conns = tr(["name", "kind", "state", "position / cursor", "error"], true);
	const add = (list, what) => (list || []).forEach((s) => {
		conns += tr([esc(s.name), what + " " + esc(s.kind || ""), esc(s.state || ""),
			esc(s.cursor ?? s.position ?? JSON.stringify(s.positions || "") ?? ""), s.error ? '<span class="warn">' + esc(s.error) + "</span>" : ""]);
	});
	for (const f of ["sources", "sinks", "webhooks"]) {
		try { add((await get("/v1/" + f))[f], f.slice(0, -1)); } catch (e) { /* not an operator */ }
	}
	$("conns").innerHTML = conns;
	$("status").textContent = "up to date " + new Date().toLocaleTimeString();
}

// ---- one key's windows
const S = { pipe: "", key: "", col: "", kinds: {}, wins: new Map(), asOf: null, plot: null, abort: null, revised: [] };
// Revised: a version after the result was out.
const api = () => "/v1/pipelines/" + enc(S.pipe);
const rev = (e) => e.kind === "late" || e.kind === "recomputed" || e.kind === "retracted";
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
		S.plot.over.onclick = () => show(S.plot.cursor.idx);
	} else S.plot.setData([xs, ys, rv]);
}
function line(e, prev) {
	const why = e.kind === "on_time" ? "" : " (" + e.kind + ")";
	const old = prev ? value(prev) + " → " : "";
	return `v${e.version}${esc(why)}: ${old}${value(e)} · count ${e.count} · at ${esc(e.emitted_at)}`;
}
async function show(i) {
	if (i == null || !S.plot) return;
	const t = S.plot.data[0][i], w = [...S.wins.values()].find((w) => w.t === t);
	if (!w) return;
	let h = `<b>${esc(w.e.window.start)}</b> ${line(w.e, w.prev)}`;
	{
		const r = await get(`${api()}/history?key=${enc(S.key)}&start=${enc(w.e.window.start)}&limit=1000`);
		h += "<table>" + tr(["version", "why", "value", "count", "known at"], true) +
			r.versions.map((v, j) => tr([v.version, esc(v.kind), (j ? value(r.versions[j - 1]) + " → " : "") + value(v), v.count, esc(v.emitted_at)])).join("") + "</table>";
		// A reconciliation's period: its ids.
		if (S.kinds[S.pipe] === "reconcile" && !S.key) {
			const p = await get(`${api()}/windows?from=${enc(w.e.window.start)}&to=${enc(w.e.window.end)}&limit=10000`);
			const ids = (k) => p.windows.filter((x) => x.kind === k).map((x) => esc(x.key.slice(3))).join(", ") || "none";
			h += `<p>missing: ${ids("missing")}<br>found late: ${ids("found")}</p>`;
		}
		// A running total: real-time beside reconciled.
		if (S.kinds[S.pipe] === "running_total") {
			const r = await get(`${api()}/total?key=${enc(S.key)}`);
			h += `<p>now: reconciled ${r.value}, real-time ${r.real_time} (difference ${r.difference})</p>`;
		}
	}
	$("detail").innerHTML = h;
}
async function load() {
	let url = `${api()}/windows?key=${enc(S.key)}&limit=10000`;
	if (S.asOf) url += "&as_of=" + enc(S.asOf);
	S.wins = new Map();
	let r, first;
	for (let next = ""; ; ) {
		r = await get(url + (next ? "&cursor=" + enc(next) : ""));
		first = first || r.windows[0];
		for (const e of r.windows) S.wins.set(e.window.start, { t: secs(e.window.start), e, prev: null });
		if (!r.next) break;
		next = r.next;
	}
	if (!S.col) {
		const e = first;
		const cols = e ? Object.keys(e.values).filter((c) => typeof e.values[c] === "number") : [];
		$("col").innerHTML = cols.map((c) => `<option>${esc(c)}</option>`).join("");
		S.col = cols[0] || "";
	}
	reset();
	draw();
}
// The key's change feed, by fetch: the token goes in a header.
async function follow() {
	if (S.abort) S.abort.abort();
	const ac = (S.abort = new AbortController());
	const url = `${api()}/changes?key=${enc(S.key)}`;
	const r = await fetch(url, { headers: { ...hdr(), Accept: "text/event-stream" }, signal: ac.signal });
	const rd = r.body.getReader(), dec = new TextDecoder();
	let buf = "";
	for (;;) {
		const { value: chunk, done } = await rd.read();
		if (done) break;
		buf += dec.decode(chunk, { stream: true });
		let i;
		while ((i = buf.indexOf("\n\n")) >= 0) {
			const msg = buf.slice(0, i);
			buf = buf.slice(i + 2);
			const data = msg.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
			if (data && msg.includes("event: emission")) change(JSON.parse(data));
		}
	}
}
function change(e) {
	if (S.asOf || e.key !== S.key) return;
	const w = S.wins.get(e.window.start);
	if (w && w.e.version >= e.version) return;
	S.wins.set(e.window.start, { t: secs(e.window.start), e, prev: w ? w.e : null });
	if (rev(e)) S.revised.push({ start: e.window.start, version: e.version, at: Date.now() });
	draw();
	$("detail").innerHTML = `<span class="flash">${esc(e.window.start)} ${line(e, w && w.e)}</span>`;
}
async function pick() {
	S.pipe = $("pipe").value;
	S.col = "";
	const r = await get(`${api()}/windows?limit=1000`);
	const keys = [...new Set(r.windows.map((e) => e.key))];
	$("key").innerHTML = keys.map((k) => `<option>${esc(k)}</option>`).join("");
	await pickKey();
}
async function pickKey() {
	S.key = $("key").value;
	follow().catch(() => {});
	await load();
}
// The slider: first result (+1 ms: ours are ms, the server's ns) to now.
$("asof").oninput = () => {
	const v = +$("asof").value, first = 1 + Math.min(...[...S.wins.values()].map((w) => Date.parse(w.e.emitted_at)));
	S.asOf = v >= 1000 || !isFinite(first) ? null : new Date(first + ((Date.now() - first) * v) / 1000).toISOString();
	$("asofl").textContent = S.asOf ? S.asOf + " (as known then)" : "now (live)";
	load();
};
$("pipe").onchange = pick;
$("key").onchange = pickKey;
$("col").onchange = () => { S.col = $("col").value; reset(); draw(); };
// For tests.
window.reckon = { state: S, points: () => S.wins.size, revised: () => S.revised };
(async () => {
	const p = await get("/v1/pipelines");
	p.pipelines.forEach((x) => (S.kinds[x.name] = x.kind));
	$("pipe").innerHTML = p.pipelines.map((x) => `<option>${esc(x.name)}</option>`).join("");
	await overview();
	setInterval(() => overview().catch((e) => ($("status").textContent = e.message)), 2000);
	if ($("pipe").value) await pick();
})().catch((e) => ($("status").textContent = e.message));
