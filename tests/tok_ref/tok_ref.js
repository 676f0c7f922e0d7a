#!/usr/bin/env node
// tok_ref.js - reference GPT-2 token ids for factlens's tokenizer tests.
//
//   node tok_ref.js ids FILE        ids of each document, one line each
//   node tok_ref.js ids-to DIR FILE...
//                                   the same for each FILE, into
//                                   DIR/BASENAME.ids (one node start-up)
//   node tok_ref.js gen SEED COUNT [FILE...]
//                                   COUNT random documents: random code
//                                   points, and when FILEs are given, words
//                                   from their documents recombined too
//   node tok_ref.js show FILE N     document N (from 1) as a JSON string
//
// FILE holds documents separated by "\n<<<FL-DOC>>>\n" (the convention of
// tests/tok_dump.c). Documents must be valid UTF-8: JavaScript strings cannot
// hold other bytes.
//
// The ids printed come from tiktoken's "gpt2" encoding (Rust regex + BPE
// compiled to WASM), with "<|endoftext|>" read as the special token as
// Hugging Face's tokenizer does. gpt-3-encoder is a second, independent
// reference (GPT-2's encoder.py ported to JavaScript); it knows no special
// tokens, so here it gets "<|endoftext|>" split out by hand. Documents where
// the two disagree are counted on stderr, by cause:
//   - U+0085 or U+FEFF: gpt-3-encoder runs GPT-2's regex with JavaScript's
//     \s, which lacks U+0085 (NEXT LINE) and has U+FEFF (BOM). GPT-2's
//     Python `regex` module and tiktoken's Rust regex both use Unicode's
//     White_Space property, and so does factlens.
//   - letters or numbers new in Unicode 17.0 (CJK Extension J, ...): node's
//     ICU tables know them, tiktoken's Unicode 16.0 tables do not.
//   - other: none seen so far; worth a look.
'use strict';

const fs = require('fs');
const path = require('path');

// Loaded on first use: they take a second or two, which gen and show skip.
let tiktoken_gpt2 = null;
let gpt3 = null;

function encoders() {
	if (tiktoken_gpt2 === null) {
		tiktoken_gpt2 = require('tiktoken').get_encoding('gpt2');
		gpt3 = require('gpt-3-encoder');
	}
	return tiktoken_gpt2;
}

const DOC_SEP = Buffer.from('\n<<<FL-DOC>>>\n');
const EOT = '<|endoftext|>';
const EOT_ID = 50256;

function usage() {
	process.stderr.write('usage: tok_ref.js ids FILE | ids-to DIR FILE... | ' +
	    'gen SEED COUNT [FILE...] | show FILE N\n');
	process.exit(2);
}

function read_docs(path) {
	const buf = fs.readFileSync(path);
	const dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
	const docs = [];
	let start = 0;
	for (;;) {
		const at = buf.indexOf(DOC_SEP, start);
		const end = at < 0 ? buf.length : at;
		try {
			docs.push(dec.decode(buf.subarray(start, end)));
		} catch (e) {
			process.stderr.write(`${path}: document ${docs.length + 1} ` +
			    `(byte ${start}) is not valid UTF-8\n`);
			process.exit(1);
		}
		if (at < 0)
			break;
		start = at + DOC_SEP.length;
	}
	return docs;
}

function gpt3_encode(text) {
	const out = [];
	text.split(EOT).forEach((part, i) => {
		if (i > 0)
			out.push(EOT_ID);
		for (const id of gpt3.encode(part))
			out.push(id);
	});
	return out;
}

function hex(s) {
	return Array.from(s).map((c) => 'U+' +
	    c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')).join(' ');
}

// Code points on which JavaScript's \s and Unicode White_Space differ.
const JS_WS_DIFF = /[\u0085\ufeff]/u;

// Letters and numbers that Unicode 17.0 added (unassigned in 16.0).
const U17_LN = new RegExp('[\\u088f\\u0c5c\\u0cdc\\ua7ce-\\ua7cf\\ua7d2\\ua7d4\\ua7f1' +
    '\\u{10940}-\\u{10959}\\u{10ec5}-\\u{10ec7}\\u{11db0}-\\u{11ddb}\\u{11de0}-\\u{11de9}' +
    '\\u{16ea0}-\\u{16eb8}\\u{16ebb}-\\u{16ed3}\\u{16ff2}-\\u{16ff6}\\u{187f8}-\\u{187ff}' +
    '\\u{18d09}-\\u{18d1e}\\u{18d80}-\\u{18df2}\\u{1e6c0}-\\u{1e6de}\\u{1e6e0}-\\u{1e6e2}' +
    '\\u{1e6e4}-\\u{1e6e5}\\u{1e6e7}-\\u{1e6ed}\\u{1e6f0}-\\u{1e6f4}\\u{1e6fe}-\\u{1e6ff}' +
    '\\u{2b73a}-\\u{2b73f}\\u{2cea2}-\\u{2cead}\\u{323b0}-\\u{33479}]', 'u');

// Writes the ids of FILE's documents to `out`, and a summary of
// gpt-3-encoder's disagreements to stderr.
function cmd_ids(file, out) {
	const enc = encoders();
	const docs = read_docs(file);
	const lines = [];
	let disagree = [];
	let ntok = 0;
	docs.forEach((doc, i) => {
		const ids = Array.from(enc.encode(doc, 'all'));
		ntok += ids.length;
		lines.push(ids.join(' '));
		const other = gpt3_encode(doc);
		if (other.length !== ids.length || other.some((v, k) => v !== ids[k]))
			disagree.push({ i, ids, other, doc });
	});
	fs.writeSync(out, lines.join('\n') + '\n');

	const ws = disagree.filter((d) => JS_WS_DIFF.test(d.doc));
	const u17 = disagree.filter((d) => !JS_WS_DIFF.test(d.doc) && U17_LN.test(d.doc));
	const other = disagree.filter((d) => !JS_WS_DIFF.test(d.doc) && !U17_LN.test(d.doc));
	process.stderr.write(`${path.basename(file)}: ${docs.length} documents, ${ntok} tiktoken ` +
	    `ids; gpt-3-encoder disagrees on ${disagree.length}: ${ws.length} with ` +
	    `U+0085 or U+FEFF (JavaScript's \\s), ${u17.length} with letters new ` +
	    `in Unicode 17, ${other.length} other\n`);
	// Show the unexplained ones first.
	disagree = other.concat(ws, u17);
	for (const d of disagree.slice(0, 5)) {
		let k = 0;
		while (k < d.ids.length && d.ids[k] === d.other[k])
			k++;
		const a = gpt3.decode(d.ids.slice(k, k + 4));
		const b = gpt3.decode(d.other.slice(k, k + 4));
		process.stderr.write(`  document ${d.i + 1}, id ${k}: tiktoken ` +
		    `${JSON.stringify(d.ids.slice(k, k + 4))} ${JSON.stringify(a)} ` +
		    `[${hex(a)}], gpt-3-encoder ${JSON.stringify(d.other.slice(k, k + 4))} ` +
		    `${JSON.stringify(b)}\n`);
	}
}

// A small deterministic PRNG (xorshift32), so every run writes the same file.
function rng(seed) {
	let x = (seed >>> 0) || 1;
	return () => {
		x ^= x << 13; x >>>= 0;
		x ^= x >>> 17;
		x ^= x << 5; x >>>= 0;
		return x / 4294967296;
	};
}

// Pools of code points the random documents draw from: the classes GPT-2's
// pattern tells apart, the whitespace code points where regex engines differ,
// and the whole code space (minus surrogates).
const POOLS = [
	[[0x20, 0x7e]],
	[[0x61, 0x7a], [0x41, 0x5a]],
	[[0x30, 0x39]],
	[[0x09, 0x0d], [0x20, 0x20], [0x1c, 0x1f], [0x85, 0x85], [0xa0, 0xa0],
	    [0x1680, 0x1680], [0x180e, 0x180e], [0x2000, 0x200d], [0x2028, 0x2029],
	    [0x202f, 0x202f], [0x205f, 0x2060], [0x3000, 0x3000], [0xfeff, 0xfeff]],
	[[0x00, 0x1f], [0x7f, 0x9f]],
	[[0x80, 0x24f]],
	[[0x300, 0x36f], [0x1ab0, 0x1aff], [0x20d0, 0x20ff]],
	[[0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff], [0x600, 0x6ff]],
	[[0x900, 0x97f], [0x980, 0xdff], [0xe00, 0xeff]],
	[[0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3]],
	[[0x2150, 0x218f], [0x2460, 0x24ff], [0xff10, 0xff19], [0x1d7ce, 0x1d7ff]],
	[[0x1f300, 0x1faff], [0x2600, 0x27bf], [0x1f3fb, 0x1f3ff], [0x200d, 0x200d],
	    [0xfe0f, 0xfe0f]],
	[[0x0, 0xd7ff], [0xe000, 0x10ffff]],
];

const SNIPPETS = ["'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'LL", "''",
    ' ', '  ', '\n', '\r\n', '\t', EOT, '123', ' 4', '...', '!!', ' ?'];

// Separators between recombined words: the usual ones and the whitespace
// and punctuation GPT-2's pattern treats specially.
const SEPS = [' ', ' ', ' ', ' ', '  ', '\n', '\n\n', '\t', '\r\n', ', ', '. ',
    '! ', '? ', '; ', ' - ', '', '\u00a0', '\u3000', '\u0085', '\u2009', ' (', ') ',
    ' "', '" ', " '", "' ", '...', ' \n ', '  \t'];
const CASES = [(w) => w, (w) => w, (w) => w, (w) => w.toUpperCase(),
    (w) => w.toLowerCase(), (w) => w.charAt(0).toUpperCase() + w.slice(1),
    (w) => w + "'s", (w) => w + "'LL", (w) => w + "n't", (w) => w + '123'];

function salad(r, words) {
	const pick = (n) => Math.floor(r() * n);
	const n = 5 + pick(120);
	let s = '';
	for (let i = 0; i < n; i++) {
		if (i > 0)
			s += SEPS[pick(SEPS.length)];
		s += CASES[pick(CASES.length)](words[pick(words.length)]);
	}
	return s;
}

function cmd_gen(seed, count, files) {
	const r = rng(seed);
	const pick = (n) => Math.floor(r() * n);
	const docs = [];
	const words = [];
	for (const f of files)
		for (const doc of read_docs(f))
			for (const w of doc.split(/\s+/u))
				if (w !== '')
					words.push(w);
	for (let d = 0; d < count; d++) {
		if (words.length > 0 && d % 2 === 1) {
			docs.push(salad(r, words).split('\n<<<FL-DOC>>>\n').join('\n'));
			continue;
		}
		let s = '';
		const len = 1 + pick(d % 10 === 0 ? 400 : 60);
		// Each document favours a few pools, so runs of one class form.
		const pools = [pick(POOLS.length), pick(POOLS.length), pick(POOLS.length)];
		while (s.length < len) {
			if (r() < 0.08) {
				s += SNIPPETS[pick(SNIPPETS.length)];
				continue;
			}
			const pool = POOLS[pools[pick(pools.length)]];
			const [lo, hi] = pool[pick(pool.length)];
			let cp = lo + pick(hi - lo + 1);
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp = 0xfffd;
			const reps = r() < 0.2 ? 1 + pick(5) : 1;
			s += String.fromCodePoint(cp).repeat(reps);
		}
		// The separator must not appear inside a document.
		docs.push(s.split('\n<<<FL-DOC>>>\n').join('\n'));
	}
	process.stdout.write(docs.join('\n<<<FL-DOC>>>\n'));
}

function main(argv) {
	if (argv[0] === 'ids' && argv.length === 2)
		cmd_ids(argv[1], 1);
	else if (argv[0] === 'ids-to' && argv.length >= 3) {
		for (const f of argv.slice(2)) {
			const fd = fs.openSync(path.join(argv[1], path.basename(f) + '.ids'), 'w');
			cmd_ids(f, fd);
			fs.closeSync(fd);
		}
	}
	else if (argv[0] === 'gen' && argv.length >= 3)
		cmd_gen(Number(argv[1]), Number(argv[2]), argv.slice(3));
	else if (argv[0] === 'show' && argv.length === 3)
		process.stdout.write(JSON.stringify(read_docs(argv[1])[Number(argv[2]) - 1]) + '\n');
	else
		usage();
}

main(process.argv.slice(2));
