/*
 * st.h - safetensors reader: validated, mmapped, never executes anything.
 *
 * File layout (all little-endian):
 *   u64 N                      header length in bytes
 *   N bytes of JSON            { "name": { "dtype": "F32", "shape": [d0, ...],
 *                                          "data_offsets": [begin, end] }, ...,
 *                                "__metadata__": { "key": "string", ... } }
 *   data                       raw tensors; offsets are relative to the byte
 *                              after the header
 * Every field is checked before use: N against the file size, the header
 * UTF-8 and one JSON object with only whitespace after it, dtype known,
 * shape entries non-negative integers, begin <= end <= data size,
 * end - begin == numel x dtype size (overflow-checked), no duplicate names,
 * and the tensors covering the data section exactly (from its first byte
 * to its last, no overlap, no gap), as the reference reader requires. Each
 * fault names the file, and the tensor or the offset.
 *
 * The writer (st_write_f32) emits the same layout: the header's keys in
 * byte order ("__metadata__" sorts before lower-case names), data in that
 * order, the header padded with spaces to a multiple of 8 bytes so that
 * every tensor starts 8-aligned, as the reference writer does.
 *
 * A sharded checkpoint (model.safetensors.index.json: {"weight_map":
 * {"tensor": "file"}}) opens as one set; each tensor must live in the file
 * the map names.
 */
#ifndef FL_ST_H
#define FL_ST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20)

typedef enum {
	ST_DTYPE_F64,
	ST_DTYPE_F32,
	ST_DTYPE_F16,
	ST_DTYPE_BF16,
	ST_DTYPE_I64,
	ST_DTYPE_I32,
	ST_DTYPE_I16,
	ST_DTYPE_I8,
	ST_DTYPE_U8,
	ST_DTYPE_BOOL,
	ST_DTYPE_COUNT
} st_dtype;

typedef struct {
	char		*name;
	st_dtype	 dtype;
	int		 ndim;
	int64_t		 shape[ST_MAX_DIMS];
	int64_t		 numel;
	const uint8_t	*data;		/* into the mapping; nbytes long */
	size_t		 nbytes;
	int		 file;		/* index into st_set.files */
} st_tensor;

typedef struct {
	char	*path;
	void	*map;
	size_t	 size;
} st_mapped;

typedef struct st_populate st_populate;

typedef struct {
	st_mapped	*files;
	int		 nfiles;
	st_tensor	*tensors;	/* sorted by name */
	int		 ntensors;
	st_populate	*populate;	/* st_advise_hot's thread, if running */
} st_set;

const char *st_dtype_name(st_dtype dt);
size_t st_dtype_size(st_dtype dt);

/* Parses and validates the header of a whole safetensors image (buf, size).
 * On success returns 0 and a heap array of tensors whose data pointers point
 * into buf, sorted by name; `label` names the file in messages. On error
 * returns -1 with *cause set. Used by the loader and the fuzz target. */
int st_parse(const uint8_t *buf, size_t size, const char *label,
    st_tensor **tensors, int *ntensors, char **cause);

/* Opens one .safetensors file (mmapped read-only). NULL and *cause on error. */
st_set *st_open_file(const char *path, char **cause);

/* Opens a model directory's weights: model.safetensors, else
 * model.safetensors.index.json and its shards. */
st_set *st_open_dir(const char *dir, char **cause);

/* Binary search by exact name; NULL when absent. */
const st_tensor *st_find(const st_set *set, const char *name);

void st_close(st_set *set);

/* Drops the tensor's mapped pages from the process's memory (after it has
 * been converted to another dtype); reading it again faults them back in
 * from the file. */
void st_release(const st_tensor *t);
/* The same for any n bytes of a mapping from p. */
void st_release_range(const void *p, size_t n);

/* One IEEE half-precision value (its bits) as f32, exactly. */
float st_f16_to_f32(uint16_t h);

/* Asks for 2 MB pages over n tensors of set that will be read in place on
 * every pass. Where the kernel and file system allow, file pages first read
 * under this advice are large folios and get mapped 2 MB at a time, and
 * streaming them costs far less than 4 KB pages (at whose boundaries the
 * hardware prefetchers stop). Tensors less than 2 MB apart are advised as
 * one run; nothing else in the file is, so that what is never read (mask
 * buffers, tensors converted at load) is not mapped 2 MB at a time. A
 * refusal is harmless. Their pages are also mapped, 32 MB per call, rather
 * than by a page fault per 64 KB on the first pass (every pass reads them
 * all): now, or with background, by a thread that st_close stops, so that
 * loading does not wait for it. */
void st_advise_hot(st_set *set, const st_tensor *const *t, int n,
    bool background);

/* Counts the NaN (*nan) and infinite (*inf) values among the n values of
 * dtype dt (F32, F16 or BF16; any other counts nothing) at p, which need
 * not be aligned. A clean run of values costs one read at memory speed. */
void st_count_nonfinite(const void *p, st_dtype dt, size_t n, size_t *nan,
    size_t *inf);

/* The SHA-256 of the set's files, as 64 hex digits: of the one file's bytes
 * (what sha256sum prints for model.safetensors), or of the shards' bytes
 * one after another in the order the index's weight_map first names
 * them. Reads the files again (through the page cache, not the mapping,
 * so that the process does not take them all in). */
void st_sha256(const st_set *set, char hex[65]);

/* One f32 tensor to write: name, shape, and data (numel floats, which the
 * writer does not keep). */
typedef struct {
	const char	*name;
	int		 ndim;
	int64_t		 shape[ST_MAX_DIMS];
	const float	*data;
} st_out;

/* Writes n tensors as an F32 safetensors file at path, with the string
 * pairs meta[0..2*nmeta) (key, value, key, value...) as "__metadata__"
 * (none when nmeta is 0). Names must be distinct. 0, or -1 with *cause
 * naming the file (and the tensor when one is at fault); a partial file is
 * removed. */
int st_write_f32(const char *path, const st_out *t, int n,
    const char *const *meta, int nmeta, char **cause);

/* Converts n values of a float dtype (F32, F16, BF16, F64) to f32. */
void st_to_f32(float *dst, const uint8_t *src, st_dtype dt, size_t n);

#endif
