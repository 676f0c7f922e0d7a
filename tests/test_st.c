/*
 * test_st.c - the safetensors reader on crafted images: every validation
 * fault gives its message, valid files read back their values, F16/BF16
 * convert exactly. The kernels' tests are in test_kernels.c.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <string.h>

#include "check.h"
#include "engine/st.h"
#include "base/sha256.h"
#include "base/util.h"

/* Builds an image: 8-byte length, header, then `data` bytes of payload. */
static uint8_t *
image(const char *header, size_t data, size_t *size)
{
	size_t h = strlen(header);
	uint8_t *buf = xcalloc(8 + h + data + 1, 1);

	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
	memcpy(buf + 8, header, h);
	for (size_t i = 0; i < data; i++)
		buf[8 + h + i] = (uint8_t)i;
	*size = 8 + h + data;
	return buf;
}

static void
expect_fault(const char *what, const char *header, size_t data, const char *needle)
{
	size_t size;
	uint8_t *buf = image(header, data, &size);
	st_tensor *t = NULL;
	char *cause = NULL;
	int n = 0, rc = st_parse(buf, size, "x.safetensors", &t, &n, &cause);

	check(rc == -1 && cause != NULL && strstr(cause, needle) != NULL &&
	    strstr(cause, "x.safetensors") != NULL,
	    "%s is refused with \"%s\" (got: %s)", what, needle, cause ? cause : "success");
	free(cause);
	free(buf);
}

static void
test_faults(void)
{
	st_tensor *t = NULL;
	char *cause = NULL;
	uint8_t tiny[4] = { 1, 2, 3, 4 }, big[16] = { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0 };

	check(st_parse(tiny, sizeof tiny, "x.safetensors", &t, &(int){ 0 }, &cause) == -1 &&
	    strstr(cause, "too short") != NULL, "a 4-byte file is refused (%s)", cause ? cause : "no error");
	free(cause);
	cause = NULL;
	check(st_parse(big, sizeof big, "x.safetensors", &t, &(int){ 0 }, &cause) == -1 &&
	    strstr(cause, "does not fit") != NULL,
	    "a header length past the end is refused (%s)", cause ? cause : "no error");
	free(cause);

	expect_fault("a header that is not JSON", "{\"a\": [", 0, "not valid JSON");
	expect_fault("a header that is a JSON array", "[1, 2]", 0, "not a JSON object");
	expect_fault("an unknown dtype",
	    "{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
	    "unknown dtype 'F12'");
	expect_fault("a missing dtype",
	    "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'dtype'");
	expect_fault("a negative shape entry",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
	    "shape entry 0");
	expect_fault("a fractional shape entry",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
	    "shape entry 0");
	expect_fault("data_offsets past the end",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
	    "out of bounds");
	expect_fault("data_offsets reversed",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
	    "out of bounds");
	expect_fault("data_offsets not matching dtype x shape",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
	    "need 12");
	expect_fault("data_offsets of the wrong form",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
	    "'data_offsets' must be");
	expect_fault("overlapping tensors",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16,
	    "overlap");
	expect_fault("a duplicate tensor name",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
	    "appears twice");
	expect_fault("a huge shape",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
	    "\"data_offsets\":[0,8]}}", 8, "too large");
	expect_fault("metadata that is not an object",
	    "{\"__metadata__\": 3}", 0, "__metadata__");
	/* What the reference reader also refuses. */
	expect_fault("bytes after the header's JSON object",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  x", 8,
	    "bytes after its JSON object, at offset 64");
	expect_fault("a header that is not UTF-8",
	    "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
	    "not UTF-8: byte 0xff at offset 11");
	expect_fault("bytes after the last tensor",
	    "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
	    "4 bytes after the last tensor");
	expect_fault("a gap between tensors",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
	    "belong to no tensor");
}

static void
test_valid(void)
{
	/* padded with spaces after the object, as writers do */
	const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
	    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
	    "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},"
	    "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]}}   ";
	size_t size;
	uint8_t *buf = image(hdr, 16, &size);
	st_tensor *t = NULL;
	char *cause = NULL;
	int n = 0, rc = st_parse(buf, size, "ok.safetensors", &t, &n, &cause);

	check(rc == 0 && n == 3, "a valid header parses (%d tensors, %s)", n,
	    cause ? cause : "no error");
	if (rc == 0 && n == 3) {
		check(strcmp(t[0].name, "a") == 0 && strcmp(t[1].name, "b") == 0 &&
		    strcmp(t[2].name, "e") == 0, "tensors are sorted by name");
		check(t[0].ndim == 2 && t[0].shape[1] == 2 && t[0].nbytes == 8 &&
		    t[0].data == buf + size - 16, "tensor 'a' points into the data section");
		check(t[1].data[0] == 8, "tensor 'b' starts at data byte 8");
		check(t[2].numel == 0, "an empty tensor is allowed");
	}
	for (int i = 0; i < n; i++)
		free(t[i].name);
	free(t);
	free(cause);
	free(buf);
}

static void
test_convert(void)
{
	/* f16: 1.0 = 0x3c00, -2.0 = 0xc000, 65504 = 0x7bff, smallest subnormal
	 * 0x0001 = 2^-24, 0.5 = 0x3800; bf16: 1.0 = 0x3f80, -3.0 = 0xc040 */
	const uint8_t f16[] = { 0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x38 };
	const float f16_want[] = { 1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f, 0.5f };
	const uint8_t bf16[] = { 0x80, 0x3f, 0x40, 0xc0 };
	const float bf16_want[] = { 1.0f, -3.0f };
	float got[5];

	st_to_f32(got, f16, ST_DTYPE_F16, 5);
	check_close("f16 to f32 exact", got, f16_want, 5, 0);
	st_to_f32(got, bf16, ST_DTYPE_BF16, 2);
	check_close("bf16 to f32 exact", got, bf16_want, 2, 0);
}

/* NaN and infinities counted apart in each float dtype, past the blocks
 * the scan reads first and in the tail after them; finite extremes
 * (the largest finite values, negative zero) are not counted. */
static void
test_nonfinite(void)
{
	enum { N = 1000 };
	static const struct {
		st_dtype	 dt;
		const char	*name;
		uint32_t	 nan, inf, big;	/* bit patterns */
	} c[] = {
		{ ST_DTYPE_F32, "F32", 0x7fc00000u, 0x7f800000u, 0x7f7fffffu },
		{ ST_DTYPE_F16, "F16", 0x7e00u, 0x7c00u, 0x7bffu },
		{ ST_DTYPE_BF16, "BF16", 0x7fc0u, 0x7f80u, 0x7f7fu },
	};
	uint8_t buf[4 * N];

	for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
		size_t es = st_dtype_size(c[k].dt), nan, inf;
		uint32_t sign = es == 4 ? 0x80000000u : 0x8000u;
		const size_t at[] = { 3, 700, N - 1 };	/* block, block, tail */

		for (size_t i = 0; i < N; i++) {
			uint32_t v = i % 2 ? c[k].big : sign;	/* -0 or the largest */

			memcpy(buf + es * i, &v, es);
		}
		st_count_nonfinite(buf, c[k].dt, N, &nan, &inf);
		check(nan == 0 && inf == 0, "%s: finite extremes count as finite "
		    "(got %zu NaN, %zu inf)", c[k].name, nan, inf);
		for (size_t j = 0; j < 3; j++) {
			uint32_t v = j == 1 ? c[k].inf | sign : c[k].nan;

			memcpy(buf + es * at[j], &v, es);
		}
		st_count_nonfinite(buf, c[k].dt, N, &nan, &inf);
		check(nan == 2 && inf == 1, "%s: 2 NaN and 1 -inf counted (got %zu, "
		    "%zu)", c[k].name, nan, inf);
		st_count_nonfinite(buf + es, c[k].dt, N - 1, &nan, &inf);
		check(nan == 2 && inf == 1, "%s: counted unaligned (got %zu, %zu)",
		    c[k].name, nan, inf);
	}
}

/* SHA-256 against FIPS 180-4's examples, whole and fed in odd pieces. */
static void
test_sha256(void)
{
	static const struct {
		const char	*in;
		const char	*want;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	char hex[65];
	fl_sha256 c;

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		sha256_init(&c);
		sha256_update(&c, v[i].in, strlen(v[i].in));
		sha256_final_hex(&c, hex);
		check(strcmp(hex, v[i].want) == 0, "sha256 of \"%.10s\": %s", v[i].in, hex);
		sha256_init(&c);
		for (size_t k = 0; k < strlen(v[i].in); k += 3)
			sha256_update(&c, v[i].in + k, strlen(v[i].in) - k < 3 ?
			    strlen(v[i].in) - k : 3);
		sha256_final_hex(&c, hex);
		check(strcmp(hex, v[i].want) == 0, "sha256 of \"%.10s\" in pieces of 3",
		    v[i].in);
	}
	{
		/* a million 'a's, in blocks of 1000: the long example */
		char a[1000];

		memset(a, 'a', sizeof a);
		sha256_init(&c);
		for (int i = 0; i < 1000; i++)
			sha256_update(&c, a, sizeof a);
		sha256_final_hex(&c, hex);
		check(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
		    == 0, "sha256 of a million 'a's: %s", hex);
	}
}

int
main(void)
{
	test_sha256();
	sha256_force_plain(true);	/* the same, through the plain rounds */
	test_sha256();
	sha256_force_plain(false);
	test_faults();
	test_valid();
	test_convert();
	test_nonfinite();
	return check_done();
}
