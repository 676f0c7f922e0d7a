/* paths.c - where factlens' files live. See paths.h. */
#include "autoconfig.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/paths.h"
#include "base/util.h"

#ifndef PKGDATADIR
#define PKGDATADIR "/usr/local/share/factlens"
#endif

/* How far above the binary's directory a source tree may start: build/
 * is one level down, distcheck's _build/sub two. */
#define SOURCE_DEPTH 3

static bool
is_source_tree(const char *dir)
{
	char *a = fl_path_join(dir, "configure.ac");
	char *b = fl_path_join(dir, "data/models/demo/config.json");
	bool yes = fl_file_exists(a) && fl_file_exists(b);

	free(a);
	free(b);
	return yes;
}

char *
fl_source_dir(void)
{
	static bool looked;
	static char *found;
	char exe[PATH_MAX];
	ssize_t n;

	if (looked)
		return found != NULL ? xstrdup(found) : NULL;
	looked = true;
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	for (int up = 0; up <= SOURCE_DEPTH; up++) {
		char *slash = strrchr(exe, '/');

		if (slash == NULL || slash == exe)
			break;
		*slash = '\0';
		if (is_source_tree(exe)) {
			found = xstrdup(exe);
			break;
		}
	}
	return found != NULL ? xstrdup(found) : NULL;
}

/* The data root and the themes' directory: FACTLENS_DATA, the source
 * tree's data/ and themes/, or the package data directory. */
static char *
root_path(const char *src_sub, const char *rel)
{
	const char *env = getenv("FACTLENS_DATA");
	char *src, *path;

	if (env != NULL && env[0] != '\0')
		return xasprintf("%s/%s", env, rel);
	if ((src = fl_source_dir()) != NULL) {
		path = xasprintf("%s/%s/%s", src, src_sub, rel);
		free(src);
		return path;
	}
	return xasprintf("%s/%s", PKGDATADIR, rel);
}

char *
fl_data_path(const char *rel)
{
	return root_path("data", rel);
}

char *
fl_theme_dir(void)
{
	const char *env = getenv("FACTLENS_DATA");
	char *src, *path;

	if (env != NULL && env[0] != '\0')
		return xasprintf("%s/themes", env);
	if ((src = fl_source_dir()) != NULL) {
		path = xasprintf("%s/themes", src);
		free(src);
		return path;
	}
	return xstrdup(PKGDATADIR "/themes");
}

static const char *
default_path(const char *var, char **cached, const char *rel)
{
	const char *env = getenv(var);

	if (env != NULL && env[0] != '\0')
		return env;
	if (*cached == NULL)
		*cached = fl_data_path(rel);
	return *cached;
}

const char *
fl_default_model(void)
{
	static char *path;

	return default_path("FACTLENS_MODEL", &path, "models/demo");
}

const char *
fl_default_task(void)
{
	static char *path;

	return default_path("FACTLENS_TASK", &path, "tasks/country_capital.json");
}

char *
fl_task_path(const char *name)
{
	size_t n = strlen(name);
	char *path, *rel;

	if (strchr(name, '/') != NULL || (n > 5 && strcmp(name + n - 5, ".json") == 0))
		return xstrdup(name);
	path = xasprintf("data/tasks/%s.json", name);
	if (fl_file_exists(path))
		return path;
	free(path);
	rel = xasprintf("tasks/%s.json", name);
	path = fl_data_path(rel);
	free(rel);
	return path;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
fl_task_names(void)
{
	char *dir = fl_data_path("tasks");
	DIR *d = opendir(dir);
	char **list = xcalloc(1, sizeof *list);
	size_t n = 0;
	struct dirent *e;

	free(dir);
	if (d == NULL)
		return list;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);

		if (len <= 5 || e->d_name[0] == '.' ||
		    strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		list = xreallocarray(list, n + 2, sizeof *list);
		list[n++] = xstrndup(e->d_name, len - 5);
		list[n] = NULL;
	}
	closedir(d);
	qsort(list, n, sizeof *list, cmp_str);
	return list;
}

void
fl_free_list(char **list)
{
	if (list == NULL)
		return;
	for (char **p = list; *p != NULL; p++)
		free(*p);
	free(list);
}

static char *
xdg_dir(const char *var, const char *fallback)
{
	const char *v = getenv(var), *home = getenv("HOME");

	if (v != NULL && v[0] == '/')
		return xasprintf("%s/factlens", v);
	if (home != NULL && home[0] != '\0')
		return xasprintf("%s/%s/factlens", home, fallback);
	return NULL;
}

static void
mkdir_p(const char *path)
{
	char *p = xstrdup(path);

	for (char *s = p + 1; *s != '\0'; s++)
		if (*s == '/') {
			*s = '\0';
			mkdir(p, 0700);
			*s = '/';
		}
	mkdir(p, 0700);
	free(p);
}

char *
fl_config_dir(void)
{
	return xdg_dir("XDG_CONFIG_HOME", ".config");
}

char *
fl_state_dir(bool create)
{
	char *d = xdg_dir("XDG_STATE_HOME", ".local/state");

	if (d != NULL && create)
		mkdir_p(d);
	return d;
}
