/* fuzz_st.c - libFuzzer target: the safetensors header parser on arbitrary
 * bytes. Every accepted tensor must lie inside the buffer. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>

#include "engine/st.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	st_tensor *t = NULL;
	char *cause = NULL;
	int n = 0;

	if (st_parse(data, size, "fuzz", &t, &n, &cause) == 0) {
		for (int i = 0; i < n; i++) {
			if (t[i].data < data || t[i].data + t[i].nbytes > data + size)
				abort();
			if (t[i].nbytes != (size_t)t[i].numel * st_dtype_size(t[i].dtype))
				abort();
			free(t[i].name);
		}
		free(t);
	} else if (cause == NULL)
		abort();
	free(cause);
	return 0;
}
