/* st.c - safetensors reader; see st.h for the file layout. */
#include "autoconfig.h"

#include "st.h"

#include <cjson/cJSON.h>
#include <errno.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sha256.h"
#include "base/util.h"

static const struct {
	const char	*name;
	size_t		 size;
} st_dtypes[ST_DTYPE_COUNT] = {
	[ST_DTYPE_F64] = { "F64", 8 },
	[ST_DTYPE_F32] = { "F32", 4 },
	[ST_DTYPE_F16] = { "F16", 2 },
	[ST_DTYPE_BF16] = { "BF16", 2 },
	[ST_DTYPE_I64] = { "I64", 8 },
	[ST_DTYPE_I32] = { "I32", 4 },
	[ST_DTYPE_I16] = { "I16", 2 },
	[ST_DTYPE_I8] = { "I8", 1 },
	[ST_DTYPE_U8] = { "U8", 1 },
	[ST_DTYPE_BOOL] = { "BOOL", 1 },
};

const char *
st_dtype_name(st_dtype dt)
{
	return dt < ST_DTYPE_COUNT ? st_dtypes[dt].name : "?";
}

size_t
st_dtype_size(st_dtype dt)
{
	return dt < ST_DTYPE_COUNT ? st_dtypes[dt].size : 0;
}

static int
st_dtype_parse(const char *s)
{
	for (int i = 0; i < ST_DTYPE_COUNT; i++)
		if (strcmp(s, st_dtypes[i].name) == 0)
			return i;
	return -1;
}

static int
st_cmp_name(const void *a, const void *b)
{
	return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int
st_cmp_offset(const void *a, const void *b)
{
	const st_tensor *x = *(const st_tensor *const *)a;
	const st_tensor *y = *(const st_tensor *const *)b;

	if (x->data != y->data)
		return x->data < y->data ? -1 : 1;
	return x->nbytes < y->nbytes ? -1 : (x->nbytes > y->nbytes);
}

static void
st_free_tensors(st_tensor *t, int n)
{
	for (int i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int
st_json_uint(const cJSON *j, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(j))
		return -1;
	d = j->valuedouble;
	if (!(d >= 0 && d <= 9007199254740992.0) || floor(d) != d)
		return -1;
	*out = (uint64_t)d;
	return 0;
}

static int
st_parse_entry(const cJSON *e, const uint8_t *data, uint64_t data_size,
    const char *label, st_tensor *t, char **cause)
{
	const cJSON *dt, *shape, *offs, *dim;
	uint64_t begin, end, numel = 1, v;
	int d;

	if (!cJSON_IsObject(e))
		return fl_error(cause, "%s: tensor '%s': header entry is not an object",
		    label, t->name);
	dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	if (!cJSON_IsString(dt))
		return fl_error(cause, "%s: tensor '%s': missing string field 'dtype'",
		    label, t->name);
	if ((d = st_dtype_parse(dt->valuestring)) < 0)
		return fl_error(cause, "%s: tensor '%s': unknown dtype '%s' (expected "
		    "F32, F16, BF16, F64, I64, I32, I16, I8, U8 or BOOL)",
		    label, t->name, dt->valuestring);
	t->dtype = (st_dtype)d;

	shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
	if (!cJSON_IsArray(shape))
		return fl_error(cause, "%s: tensor '%s': missing array field 'shape'",
		    label, t->name);
	t->ndim = 0;
	cJSON_ArrayForEach(dim, shape) {
		if (t->ndim == ST_MAX_DIMS)
			return fl_error(cause, "%s: tensor '%s': more than %d dimensions",
			    label, t->name, ST_MAX_DIMS);
		if (st_json_uint(dim, &v) != 0)
			return fl_error(cause, "%s: tensor '%s': shape entry %d is not a "
			    "non-negative integer", label, t->name, t->ndim);
		if (v != 0 && numel > UINT64_MAX / 16 / v)
			return fl_error(cause, "%s: tensor '%s': shape is too large",
			    label, t->name);
		numel *= v;
		t->shape[t->ndim++] = (int64_t)v;
	}
	t->numel = (int64_t)numel;

	offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    st_json_uint(cJSON_GetArrayItem(offs, 0), &begin) != 0 ||
	    st_json_uint(cJSON_GetArrayItem(offs, 1), &end) != 0)
		return fl_error(cause, "%s: tensor '%s': 'data_offsets' must be two "
		    "non-negative integers [begin, end]", label, t->name);
	if (begin > end || end > data_size)
		return fl_error(cause, "%s: tensor '%s': data_offsets [%llu, %llu] out "
		    "of bounds (data section is %llu bytes)", label, t->name,
		    (unsigned long long)begin, (unsigned long long)end,
		    (unsigned long long)data_size);
	if (end - begin != numel * st_dtype_size(t->dtype))
		return fl_error(cause, "%s: tensor '%s': data_offsets span %llu bytes "
		    "but %s x %llu elements need %llu", label, t->name,
		    (unsigned long long)(end - begin), st_dtype_name(t->dtype),
		    (unsigned long long)numel,
		    (unsigned long long)(numel * st_dtype_size(t->dtype)));
	t->data = data + begin;
	t->nbytes = (size_t)(end - begin);
	return 0;
}

int
st_parse(const uint8_t *buf, size_t size, const char *label,
    st_tensor **tensors, int *ntensors, char **cause)
{
	uint64_t hlen = 0;
	cJSON *root, *e;
	st_tensor *t = NULL, **by_off = NULL;
	const uint8_t *data;
	uint64_t data_size;
	int n = 0, cap, i;

	if (size < 8)
		return fl_error(cause, "%s: file is %zu bytes, too short for a "
		    "safetensors header", label, size);
	for (i = 0; i < 8; i++)
		hlen |= (uint64_t)buf[i] << (8 * i);
	if (hlen > ST_MAX_HEADER || hlen > size - 8)
		return fl_error(cause, "%s: header length %llu does not fit the file "
		    "(%zu bytes)", label, (unsigned long long)hlen, size);
	if (hlen < 2)
		return fl_error(cause, "%s: header length %llu is too short for JSON",
		    label, (unsigned long long)hlen);
	/* As the reference reader: the header is UTF-8 text, one JSON object
	 * and nothing after it but whitespace (writers pad with spaces). */
	for (uint64_t at = 0; at < hlen; ) {
		uint32_t cp;
		size_t k = fl_utf8_seq(buf + 8 + at, (size_t)(hlen - at), &cp);

		if (k == 0)
			return fl_error(cause, "%s: header is not UTF-8: byte 0x%02x at offset "
			    "%llu", label, buf[8 + at], (unsigned long long)(8 + at));
		at += k;
	}
	{
		const char *end = NULL;

		root = cJSON_ParseWithLengthOpts((const char *)buf + 8, (size_t)hlen, &end, 0);
		if (root == NULL)
			return fl_error(cause, "%s: header is not valid JSON", label);
		for (; end != NULL && end < (const char *)buf + 8 + hlen; end++)
			if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
				cJSON_Delete(root);
				return fl_error(cause, "%s: header has bytes after its JSON "
				    "object, at offset %lld", label,
				    (long long)(end - (const char *)buf));
			}
	}
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return fl_error(cause, "%s: header is not a JSON object", label);
	}
	data = buf + 8 + hlen;
	data_size = size - 8 - hlen;

	cap = cJSON_GetArraySize(root);
	t = xcalloc(cap > 0 ? (size_t)cap : 1, sizeof *t);
	cJSON_ArrayForEach(e, root) {
		if (e->string == NULL)
			continue;
		if (strcmp(e->string, "__metadata__") == 0) {
			if (!cJSON_IsObject(e))
				goto bad_meta;
			continue;
		}
		t[n].name = xstrdup(e->string);
		n++;
		if (st_parse_entry(e, data, data_size, label, &t[n - 1], cause) != 0)
			goto fail;
	}
	cJSON_Delete(root);
	root = NULL;

	qsort(t, (size_t)n, sizeof *t, st_cmp_name);
	for (i = 1; i < n; i++)
		if (strcmp(t[i - 1].name, t[i].name) == 0) {
			fl_error(cause, "%s: tensor '%s' appears twice in the header",
			    label, t[i].name);
			goto fail;
		}
	by_off = xcalloc(n > 0 ? (size_t)n : 1, sizeof *by_off);
	for (i = 0; i < n; i++)
		by_off[i] = &t[i];
	qsort(by_off, (size_t)n, sizeof *by_off, st_cmp_offset);
	for (i = 1; i < n; i++) {
		const st_tensor *a = by_off[i - 1], *b = by_off[i];

		if (b->nbytes > 0 && a->data + a->nbytes > b->data) {
			fl_error(cause, "%s: tensors '%s' and '%s' overlap in the data "
			    "section", label, a->name, b->name);
			goto fail;
		}
	}
	/* As the reference reader: the tensors cover the data section from
	 * its first byte to its last, with no gap and nothing after. */
	{
		uint64_t at = 0;

		for (i = 0; i < n; i++) {
			const st_tensor *a = by_off[i];
			uint64_t begin = (uint64_t)(a->data - data);

			if (begin != at) {
				fl_error(cause, "%s: tensor '%s' starts at data offset %llu, not "
				    "%llu where the tensor before it ends: the bytes between "
				    "belong to no tensor", label, a->name,
				    (unsigned long long)begin, (unsigned long long)at);
				goto fail;
			}
			at = begin + a->nbytes;
		}
		if (at != data_size) {
			fl_error(cause, "%s: %llu bytes after the last tensor (file offset "
			    "%llu on) belong to no tensor", label,
			    (unsigned long long)(data_size - at),
			    (unsigned long long)(8 + hlen + at));
			goto fail;
		}
	}
	free(by_off);
	*tensors = t;
	*ntensors = n;
	return 0;

bad_meta:
	fl_error(cause, "%s: '__metadata__' is not an object", label);
fail:
	cJSON_Delete(root);
	free(by_off);
	st_free_tensors(t, n);
	return -1;
}

static int
st_map(st_mapped *m, const char *path, char **cause)
{
	struct stat sb;
	int fd;

	memset(m, 0, sizeof *m);
	/* O_NONBLOCK: a FIFO must not wait for a writer (it is refused). */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return fl_error(cause, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return fl_error(cause, "%s: not a regular file", path);
	}
	m->size = (size_t)sb.st_size;
	if (m->size > 0) {
		m->map = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m->map == MAP_FAILED) {
			m->map = NULL;
			close(fd);
			return fl_error(cause, "%s: cannot mmap: %s", path, strerror(errno));
		}
	}
	close(fd);
	m->path = xstrdup(path);
	return 0;
}

static void
st_unmap(st_mapped *m)
{
	if (m->map != NULL)
		munmap(m->map, m->size);
	free(m->path);
}

/* ---- mapping the hot tensors' pages ----------------------------------- */

#define POPULATE_CHUNK ((uintptr_t)32 << 20)

struct st_populate {
	uintptr_t	*r;	/* page-aligned runs [r[2i], r[2i + 1]) */
	int		 n;
	atomic_bool	 stop;
	pthread_t	 thread;
};

static void
populate_runs(st_populate *p)
{
#if defined(MADV_POPULATE_READ)	/* Linux 5.14; a refusal is harmless */
	for (int i = 0; i < p->n; i++)
		for (uintptr_t a = p->r[2 * i]; a < p->r[2 * i + 1];
		    a += POPULATE_CHUNK) {
			uintptr_t b = p->r[2 * i + 1] - a < POPULATE_CHUNK ?
			    p->r[2 * i + 1] : a + POPULATE_CHUNK;

			if (atomic_load(&p->stop))
				return;
			madvise((void *)a, b - a, MADV_POPULATE_READ);
		}
#else
	(void)p;
#endif
}

static void *
populate_thread(void *arg)
{
	populate_runs(arg);
	return NULL;
}

static void
populate_stop(st_set *set)
{
	if (set->populate == NULL)
		return;
	atomic_store(&set->populate->stop, true);
	pthread_join(set->populate->thread, NULL);
	free(set->populate->r);
	free(set->populate);
	set->populate = NULL;
}

void
st_close(st_set *set)
{
	if (set == NULL)
		return;
	populate_stop(set);
	for (int i = 0; i < set->nfiles; i++)
		st_unmap(&set->files[i]);
	free(set->files);
	st_free_tensors(set->tensors, set->ntensors);
	free(set);
}

/* Maps one more file into set and appends its tensors. */
static int
st_add_file(st_set *set, const char *path, char **cause)
{
	st_mapped m;
	st_tensor *t;
	int n, i;

	if (st_map(&m, path, cause) != 0)
		return -1;
	if (st_parse(m.map, m.size, path, &t, &n, cause) != 0) {
		st_unmap(&m);
		return -1;
	}
	set->files = xreallocarray(set->files, (size_t)set->nfiles + 1, sizeof *set->files);
	set->files[set->nfiles] = m;
	set->tensors = xreallocarray(set->tensors, (size_t)set->ntensors + (size_t)n,
	    sizeof *set->tensors);
	for (i = 0; i < n; i++) {
		t[i].file = set->nfiles;
		set->tensors[set->ntensors + i] = t[i];
	}
	set->ntensors += n;
	set->nfiles++;
	free(t);
	return 0;
}

st_set *
st_open_file(const char *path, char **cause)
{
	st_set *set = xcalloc(1, sizeof *set);

	if (st_add_file(set, path, cause) != 0) {
		st_close(set);
		return NULL;
	}
	return set;
}

void
st_release(const st_tensor *t)
{
	st_release_range(t->data, t->nbytes);
}

void
st_release_range(const void *p, size_t n)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)p, b = a + n;

	/* Only whole pages inside the tensor: neighbours may still be in use. */
	a = (a + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
	b &= ~((uintptr_t)page - 1);
	if (b > a)
		madvise((void *)a, b - a, MADV_DONTNEED);
}

static int
cmp_range(const void *a, const void *b)
{
	uintptr_t x = ((const uintptr_t *)a)[0], y = ((const uintptr_t *)b)[0];

	return x < y ? -1 : x > y;
}

void
st_advise_hot(st_set *set, const st_tensor *const *t, int n, bool background)
{
	st_populate *p = xcalloc(1, sizeof *p);
	const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	const uintptr_t huge = (uintptr_t)2 << 20;
	uintptr_t *r = xcalloc((size_t)n * 2 + 2, sizeof *r);
	int k = 0;

	for (int i = 0; i < n; i++) {
		r[2 * i] = (uintptr_t)t[i]->data;
		r[2 * i + 1] = (uintptr_t)t[i]->data + t[i]->nbytes;
	}
	qsort(r, (size_t)n, 2 * sizeof *r, cmp_range);
	/* Runs of tensors less than a huge page apart, each advised over the
	 * whole huge pages inside it. */
	for (int i = 0; i < n; i = k) {
		uintptr_t a = r[2 * i], b = r[2 * i + 1], ha, hb;

		for (k = i + 1; k < n && r[2 * k] < b + huge; k++)
			if (r[2 * k + 1] > b)
				b = r[2 * k + 1];
		ha = (a + huge - 1) & ~(huge - 1);
		hb = b & ~(huge - 1);
		if (hb > ha)
			madvise((void *)ha, hb - ha, MADV_HUGEPAGE);
		/* the runs, page-aligned, in place of the tensors' ranges */
		r[2 * p->n] = a & ~(page - 1);
		r[2 * p->n + 1] = (b + page - 1) & ~(page - 1);
		p->n++;
	}
	p->r = r;
	populate_stop(set);
	if (!background || pthread_create(&p->thread, NULL, populate_thread, p) != 0) {
		populate_runs(p);
		free(r);
		free(p);
		return;
	}
	set->populate = p;
}

const st_tensor *
st_find(const st_set *set, const char *name)
{
	int lo = 0, hi = set->ntensors - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(name, set->tensors[mid].name);

		if (c == 0)
			return &set->tensors[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* A shard name must be a plain file name inside the model directory. */
static int
st_shard_name_ok(const char *s)
{
	return s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL;
}

static st_set *
st_open_index(const char *dir, const char *index_path, char **cause)
{
	st_set *set = NULL;
	cJSON *root = NULL, *map, *e;
	char *text, *path;
	int i;

	text = fl_read_file(index_path, NULL, 64u << 20, cause);
	if (text == NULL)
		return NULL;
	root = cJSON_Parse(text);
	free(text);
	if (root == NULL) {
		fl_error(cause, "%s: not valid JSON", index_path);
		return NULL;
	}
	map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(map)) {
		fl_error(cause, "%s: missing object field 'weight_map'", index_path);
		goto fail;
	}
	set = xcalloc(1, sizeof *set);
	cJSON_ArrayForEach(e, map) {
		int seen = 0;

		if (!cJSON_IsString(e) || !st_shard_name_ok(e->valuestring)) {
			fl_error(cause, "%s: weight_map entry '%s' must name a file in "
			    "the model directory", index_path, e->string);
			goto fail;
		}
		for (i = 0; i < set->nfiles && !seen; i++) {
			const char *base = strrchr(set->files[i].path, '/');

			seen = strcmp(base != NULL ? base + 1 : set->files[i].path,
			    e->valuestring) == 0;
		}
		if (seen)
			continue;
		path = fl_path_join(dir, e->valuestring);
		if (st_add_file(set, path, cause) != 0) {
			free(path);
			goto fail;
		}
		free(path);
	}
	qsort(set->tensors, (size_t)set->ntensors, sizeof *set->tensors, st_cmp_name);
	for (i = 1; i < set->ntensors; i++)
		if (strcmp(set->tensors[i - 1].name, set->tensors[i].name) == 0) {
			fl_error(cause, "%s: tensor '%s' is stored in two shards (%s, %s)",
			    index_path, set->tensors[i].name,
			    set->files[set->tensors[i - 1].file].path,
			    set->files[set->tensors[i].file].path);
			goto fail;
		}
	cJSON_ArrayForEach(e, map) {
		const st_tensor *t = st_find(set, e->string);
		const char *base;

		if (t == NULL) {
			fl_error(cause, "%s: tensor '%s' is listed in weight_map but not "
			    "found in %s", index_path, e->string, e->valuestring);
			goto fail;
		}
		base = strrchr(set->files[t->file].path, '/');
		if (strcmp(base != NULL ? base + 1 : set->files[t->file].path,
		    e->valuestring) != 0) {
			fl_error(cause, "%s: tensor '%s' is mapped to %s but stored in %s",
			    index_path, e->string, e->valuestring,
			    set->files[t->file].path);
			goto fail;
		}
	}
	cJSON_Delete(root);
	return set;
fail:
	cJSON_Delete(root);
	st_close(set);
	return NULL;
}

st_set *
st_open_dir(const char *dir, char **cause)
{
	char *single = fl_path_join(dir, "model.safetensors");
	char *index = fl_path_join(dir, "model.safetensors.index.json");
	st_set *set;

	if (fl_file_exists(single))
		set = st_open_file(single, cause);
	else if (fl_file_exists(index))
		set = st_open_index(dir, index, cause);
	else {
		fl_error(cause, "%s: no model.safetensors or model.safetensors.index.json "
		    "(factlens reads Hugging Face safetensors checkpoints, not pickle "
		    ".bin files)", dir);
		set = NULL;
	}
	free(single);
	free(index);
	return set;
}

float
st_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	float f;

	if (exp == 0) {
		/* zero or subnormal: man x 2^-24 */
		f = (float)man * 5.9604644775390625e-8f;
		memcpy(&bits, &f, 4);
		bits |= sign;
	} else if (exp == 31)
		bits = sign | 0x7f800000u | (man << 13);
	else
		bits = sign | ((exp + 112) << 23) | (man << 13);
	memcpy(&f, &bits, 4);
	return f;
}

/* Values of es bytes (4 or 2, a constant where this is inlined, so that
 * each width gets its own vectorized loops) whose magnitude bits (mag)
 * reach the all-ones exponent (top): an infinity when they equal it (a
 * zero mantissa), a NaN above it. */
#define NONFINITE_BLOCK 256

static inline uint32_t
bits_at(const uint8_t *b, size_t i, size_t es)
{
	uint32_t u32;
	uint16_t u16;

	if (es == 4) {
		memcpy(&u32, b + 4 * i, 4);
		return u32;
	}
	memcpy(&u16, b + 2 * i, 2);
	return u16;
}

static inline void
count_nonfinite(const uint8_t *b, size_t n, size_t es, uint32_t mag,
    uint32_t top, size_t *nan, size_t *inf)
{
	uint32_t mx = 0;
	size_t i = 0;

	/* Blocks of a fixed length, which -O2 vectorizes: the largest
	 * magnitude says whether there is anything to count. */
	for (; i + NONFINITE_BLOCK <= n; i += NONFINITE_BLOCK)
		for (int j = 0; j < NONFINITE_BLOCK; j++) {
			uint32_t u = bits_at(b, i + (size_t)j, es) & mag;

			mx = u > mx ? u : mx;
		}
	for (; i < n; i++) {
		uint32_t u = bits_at(b, i, es) & mag;

		mx = u > mx ? u : mx;
	}
	if (mx < top)
		return;
	for (i = 0; i < n; i++) {
		uint32_t u = bits_at(b, i, es) & mag;

		*nan += u > top;
		*inf += u == top;
	}
}

void
st_count_nonfinite(const void *p, st_dtype dt, size_t n, size_t *nan,
    size_t *inf)
{
	*nan = *inf = 0;
	if (dt == ST_DTYPE_F32)
		count_nonfinite(p, n, 4, 0x7fffffffu, 0x7f800000u, nan, inf);
	else if (dt == ST_DTYPE_F16)
		count_nonfinite(p, n, 2, 0x7fffu, 0x7c00u, nan, inf);
	else if (dt == ST_DTYPE_BF16)
		count_nonfinite(p, n, 2, 0x7fffu, 0x7f80u, nan, inf);
}

void
st_to_f32(float *dst, const uint8_t *src, st_dtype dt, size_t n)
{
	size_t i;

	switch (dt) {
	case ST_DTYPE_F32:
		memcpy(dst, src, n * 4);
		break;
	case ST_DTYPE_F16:
		i = 0;
#if defined(__F16C__)
		/* The hardware conversion: OPT-1.3B's 1.3 G values in well under
		 * a second, against ~25 s bit by bit. */
		for (; i + 8 <= n; i += 8)
			_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(
			    _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i))));
#endif
		for (; i < n; i++)
			dst[i] = st_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
		break;
	case ST_DTYPE_BF16:
		for (i = 0; i < n; i++) {
			uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;

			memcpy(&dst[i], &bits, 4);
		}
		break;
	case ST_DTYPE_F64:
		for (i = 0; i < n; i++) {
			double d;

			memcpy(&d, src + 8 * i, 8);
			dst[i] = (float)d;
		}
		break;
	default:
		memset(dst, 0, n * 4);
		break;
	}
}

void
st_sha256(const st_set *set, char hex[65])
{
	fl_sha256 c;

	enum { CHUNK = 4 << 20 };
	unsigned char *buf = NULL;

	/* Read from the files, not the mapping: hashing through the mapping
	 * brought every page of it into the process (GPT-2 XL's shape: 6 GB
	 * more resident, on top of the kernels' copy of the weights). */
	sha256_init(&c);
	for (int i = 0; i < set->nfiles; i++) {
		const st_mapped *f = &set->files[i];
		int fd = open(f->path, O_RDONLY | O_CLOEXEC);
		size_t at = 0;

		if (fd >= 0 && buf == NULL)
			buf = xmalloc(CHUNK);
		while (fd >= 0 && at < f->size) {
			size_t want = f->size - at < CHUNK ? f->size - at : CHUNK;
			ssize_t got = pread(fd, buf, want, (off_t)at);

			if (got <= 0)
				break;
			sha256_update(&c, buf, (size_t)got);
			at += (size_t)got;
		}
		if (fd >= 0)
			close(fd);
		/* a file gone or cut since it was mapped hashes short: not the
		 * hash of the model that was loaded, which is what it is */
	}
	free(buf);
	sha256_final_hex(&c, hex);
}

/* ---- writer ----------------------------------------------------------- */

static int
st_cmp_out(const void *a, const void *b)
{
	return strcmp(((const st_out *const *)a)[0]->name,
	    ((const st_out *const *)b)[0]->name);
}

static int64_t
st_out_numel(const st_out *t)
{
	int64_t n = 1;

	for (int d = 0; d < t->ndim; d++)
		n *= t->shape[d];
	return n;
}

int
st_write_f32(const char *path, const st_out *t, int n,
    const char *const *meta, int nmeta, char **cause)
{
	const st_out **order = xcalloc((size_t)(n > 0 ? n : 1), sizeof *order);
	cJSON *root = cJSON_CreateObject(), *md;
	char *json = NULL;
	uint64_t off = 0, hlen;
	size_t jlen;
	FILE *f = NULL;
	int rc = -1;

	for (int i = 0; i < n; i++) {
		order[i] = &t[i];
		if (t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS) {
			fl_error(cause, "%s: tensor %s: %d dimensions (at most %d)",
			    path, t[i].name, t[i].ndim, ST_MAX_DIMS);
			goto out;
		}
	}
	qsort(order, (size_t)n, sizeof *order, st_cmp_out);
	for (int i = 1; i < n; i++)
		if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
			fl_error(cause, "%s: tensor %s named twice", path, order[i]->name);
			goto out;
		}
	/* "__metadata__" sorts before every lower-case name; the tensors'
	 * names are the hooks' (lower case), so byte order is kept. */
	if (nmeta > 0) {
		md = cJSON_AddObjectToObject(root, "__metadata__");
		for (int i = 0; i < nmeta; i++)
			cJSON_AddStringToObject(md, meta[2 * i], meta[2 * i + 1]);
	}
	for (int i = 0; i < n; i++) {
		cJSON *e = cJSON_AddObjectToObject(root, order[i]->name);
		cJSON *sh = cJSON_AddArrayToObject(e, "shape");
		cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
		uint64_t nb = (uint64_t)st_out_numel(order[i]) * sizeof(float);

		cJSON_AddStringToObject(e, "dtype", "F32");
		for (int d = 0; d < order[i]->ndim; d++)
			cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)order[i]->shape[d]));
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + nb)));
		off += nb;
	}
	json = cJSON_PrintUnformatted(root);
	jlen = strlen(json);
	hlen = (jlen + 7) / 8 * 8;
	if ((f = fopen(path, "wb")) == NULL) {
		fl_error(cause, "%s: cannot create: %s", path, strerror(errno));
		goto out;
	}
	{
		uint8_t le[8];

		for (int i = 0; i < 8; i++)
			le[i] = (uint8_t)(hlen >> (8 * i));
		fwrite(le, 1, 8, f);
	}
	fwrite(json, 1, jlen, f);
	for (size_t i = jlen; i < hlen; i++)
		fputc(' ', f);
	/* The host is little-endian (x86-64, arm64): floats go out as they are. */
	for (int i = 0; i < n; i++)
		fwrite(order[i]->data, sizeof(float), (size_t)st_out_numel(order[i]), f);
	if (ferror(f) | (fclose(f) != 0)) {
		f = NULL;
		fl_error(cause, "%s: write error", path);
		remove(path);
		goto out;
	}
	f = NULL;
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	cJSON_free(json);
	cJSON_Delete(root);
	free(order);
	return rc;
}
