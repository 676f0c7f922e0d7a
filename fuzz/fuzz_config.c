/* fuzz_config.c - libFuzzer target: config.json parsing on arbitrary text.
 * An accepted config must be internally consistent. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *cause = NULL;
	fl_config c;

	memcpy(text, data, size);
	text[size] = '\0';
	if (config_parse(&c, text, "fuzz", &cause) == 0) {
		if (c.n_layer < 1 || c.n_head < 1 || c.d_head * c.n_head != c.d_model ||
		    c.n_vocab < 1 || c.n_ctx < 1 || c.d_mlp < 1 || c.n_kv_head < 1 ||
		    c.n_head % c.n_kv_head != 0 || (c.rotary && c.d_head % 2 != 0))
			abort();
	} else if (cause == NULL)
		abort();
	free(cause);
	free(text);
	return 0;
}
