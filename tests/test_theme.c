/*
 * test_theme.c - themes degraded to the terminal's colours: at 8 and 16
 * colours no role drawn over the terminal's own background takes that
 * background's colour (text, borders and near-zero heat cells would
 * vanish), for every bundled theme; truecolor keeps the theme's colours.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/util.h"
#include "ui/theme.h"

static void
check_theme(const char *path)
{
	ui_theme t;
	ui_term_style st[UI_ROLE_COUNT];
	char *cause = NULL;
	const char *base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;

	if (theme_load(&t, path, &cause) != 0) {
		check(0, "%s loads (%s)", base, cause);
		free(cause);
		return;
	}
	for (ui_depth d = UI_DEPTH_8; d <= UI_DEPTH_16; d++) {
		int vanish = 0;
		char roles[512] = "";

		theme_resolve(&t, d, st);
		for (int r = 0; r < UI_ROLE_COUNT; r++) {
			int fg = st[r].fg;
			/* a "default" background: black under the dark themes' light
			 * text, white under light.theme's dark text */
			bool dark_bg = strstr(base, "light") == NULL;
			bool gone = st[r].bg < 0 && fg >= 0 &&
			    (dark_bg ? fg == 0 : (fg == 7 || fg == 15));

			if (gone) {
				vanish++;
				snprintf(roles + strlen(roles), sizeof roles - strlen(roles), " %s",
				    role_name((ui_role)r));
			}
		}
		check(vanish == 0, "%s at %s colours: no role takes the background's colour "
		    "(%d do:%s)", base, depth_name(d), vanish, roles);
	}
}

int
main(int argc, char **argv)
{
	const char *src = getenv("top_srcdir");
	static const char *names[] = { "dark", "light", "high-contrast", "colorblind" };

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char *p = xasprintf("%s/themes/%s.theme", src != NULL ? src : ".", names[i]);

		check_theme(p);
		free(p);
	}
	return check_done();
}
