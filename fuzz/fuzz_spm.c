/* fuzz_spm.c - libFuzzer target: a SentencePiece tokenizer.model (protobuf)
 * from arbitrary bytes. A refused file must say why; an accepted one must
 * encode text to ids in range and decode without faults. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok_spm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char text[] = "The capital of  France is \xff Paris.\n\xe6\x9d\xb1";
	char *cause = NULL, *back;
	tok_spm *s = spm_parse(data, size, "fuzz", &cause);
	int *ids, n;

	if (s == NULL) {
		if (cause == NULL)
			abort();
		free(cause);
		return 0;
	}
	n = spm_encode(s, text, sizeof text - 1, &ids);
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= spm_size(s))
			abort();
	back = spm_decode(s, ids, n, NULL);
	free(back);
	free(ids);
	spm_free(s);
	return 0;
}
