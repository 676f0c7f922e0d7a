// pdf-text.js FILE: prints, as a JSON array, the text runs drawn in a PDF
// that cairo wrote: each Tj string, and each TJ array split where it moves
// by more than a third of an em (cairo joins separate labels of one font
// and size into one TJ). Codes are read back through each font's ToUnicode
// map, so the runs are the text as drawn, not as the program meant it.
"use strict";
const fs = require("fs"), zlib = require("zlib");
const buf = fs.readFileSync(process.argv[2]), src = buf.toString("latin1");
const objs = {};
for (const m of src.matchAll(/(\d+) 0 obj\b/g)) {
	const start = m.index + m[0].length, end = src.indexOf("endobj", start);
	const body = src.slice(start, end), k = body.indexOf("stream");
	let dict = body, data = null;
	if (k >= 0) {
		dict = body.slice(0, k);
		let s = start + k + 6;
		if (src[s] === "\r") s++;
		if (src[s] === "\n") s++;
		const e = src.indexOf("endstream", s);
		data = buf.subarray(s, e);
		if (/\/FlateDecode/.test(dict))
			data = zlib.inflateSync(data);
		data = data.toString("latin1");
	}
	objs[m[1]] = { dict, data };
}
function cmapOf(text) {
	const map = {};
	let width = 1;
	const cs = /begincodespacerange\s*<([0-9a-fA-F]+)>/.exec(text);
	if (cs) width = cs[1].length / 2;
	const u16 = (h) => { let s = ""; for (let i = 0; i < h.length; i += 4) s += String.fromCharCode(parseInt(h.slice(i, i + 4), 16)); return s; };
	for (const b of text.matchAll(/beginbfchar([\s\S]*?)endbfchar/g))
		for (const p of b[1].matchAll(/<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>/g))
			map[parseInt(p[1], 16)] = u16(p[2]);
	for (const b of text.matchAll(/beginbfrange([\s\S]*?)endbfrange/g))
		for (const p of b[1].matchAll(/<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>/g)) {
			const lo = parseInt(p[1], 16), hi = parseInt(p[2], 16);
			for (let c = lo; c <= hi; c++) {
				const d = u16(p[3]);
				map[c] = d.slice(0, -1) + String.fromCharCode(d.charCodeAt(d.length - 1) + c - lo);
			}
		}
	return { map, width };
}
const fonts = {};
for (const o of Object.values(objs))
	for (const f of o.dict.matchAll(/\/(f-\d+-\d+) (\d+) 0 R/g)) {
		let fo = objs[f[2]], tu = fo && /\/ToUnicode (\d+) 0 R/.exec(fo.dict);
		if (!tu && fo) { // a Type0 font: the map may hang off the font itself
			const d = /\/DescendantFonts \[\s*(\d+) 0 R/.exec(fo.dict);
			if (d) tu = /\/ToUnicode (\d+) 0 R/.exec(objs[d[1]].dict);
		}
		if (tu) fonts[f[1]] = cmapOf(objs[tu[1]].data);
	}
function unescape(s) {
	return s.replace(/\\([0-7]{1,3}|.)/gs, (_, c) => /^[0-7]/.test(c) ? String.fromCharCode(parseInt(c, 8)) :
		({ n: "\n", r: "\r", t: "\t", b: "\b", f: "\f" })[c] ?? c);
}
function decode(bytes, font) {
	const f = fonts[font] || { map: {}, width: 1 };
	let out = "";
	for (let i = 0; i + f.width <= bytes.length; i += f.width) {
		let c = 0;
		for (let j = 0; j < f.width; j++) c = c * 256 + bytes.charCodeAt(i + j);
		out += f.map[c] ?? "\uFFFD";
	}
	return out;
}
const runs = [];
let lastStr = "";
const tok = /\/([^\s\/\[\]()<>]+)|\(((?:\\.|[^\\)])*)\)|<([0-9a-fA-F\s]*)>|(\[)|(\])|(-?[\d.]+)|([A-Za-z'"*]+)/gs;
for (const o of Object.values(objs)) {
	if (o.data === null || !/\bBT\b/.test(o.data)) continue;
	let font = null, lastName = null, inArr = false, cur = null;
	for (const t of o.data.matchAll(tok)) {
		const str = t[2] !== undefined ? unescape(t[2]) : t[3] !== undefined ?
			t[3].replace(/\s/g, "").replace(/../g, (h) => String.fromCharCode(parseInt(h, 16))) : null;
		if (t[1] !== undefined) lastName = t[1];
		else if (str !== null) {
			if (inArr) cur = (cur ?? "") + decode(str, font);
			else lastStr = decode(str, font);
		} else if (t[4]) { inArr = true; cur = null; }
		else if (t[5]) { if (cur !== null) runs.push(cur); inArr = false; cur = null; }
		else if (t[6] !== undefined) { if (inArr && Math.abs(parseFloat(t[6])) > 333 && cur !== null) { runs.push(cur); cur = null; } }
		else if (t[7] === "Tf") font = lastName;
		else if (t[7] === "Tj" || t[7] === "'" || t[7] === '"') runs.push(lastStr);
	}
}
console.log(JSON.stringify(runs));
