/*
 * paths.h - the one place that knows where factlens' files live.
 *
 * Bundled data (the demo model, the task files, the themes) comes from one
 * of two roots:
 *  - the source tree the running binary was built in, when the binary sits
 *    inside one (build/factlens, a distcheck build): found by walking up
 *    from the binary's own directory (/proc/self/exe) to a folder holding
 *    configure.ac and data/models/demo/config.json, so no source path is
 *    compiled into the binary;
 *  - else the installed package data directory (PKGDATADIR, e.g.
 *    /usr/local/share/factlens), which holds models/, tasks/ and themes/.
 * FACTLENS_DATA=DIR overrides both (DIR holds models/, tasks/, themes/).
 *
 * The user's own files follow the XDG base directories: the config
 * directory ($XDG_CONFIG_HOME/factlens: rc, themes) and the state
 * directory ($XDG_STATE_HOME/factlens: history).
 *
 * Every function returns a heap string the caller frees, or NULL where it
 * says so.
 */
#ifndef FL_BASE_PATHS_H
#define FL_BASE_PATHS_H

#include <stdbool.h>

/* A bundled data file or directory, rel relative to the data root (e.g.
 * "tasks/country_capital.json", "models/demo"). The path is returned even
 * when nothing is there, so that an error can name it. */
char *fl_data_path(const char *rel);

/* The bundled themes' directory. */
char *fl_theme_dir(void);

/* The source tree the binary runs from, or NULL when it is the installed
 * one. */
char *fl_source_dir(void);

/* The demo model's directory (FACTLENS_MODEL overrides) and the default
 * task, country_capital (FACTLENS_TASK overrides). Static strings, made
 * once. */
const char *fl_default_model(void);
const char *fl_default_task(void);

/* A task named by the user: anything with a '/' or ending in .json is a
 * file as given; NAME is data/tasks/NAME.json in the working directory when
 * there is one, else the bundled tasks/NAME.json. */
char *fl_task_path(const char *name);

/* The names of the bundled tasks (the .json files of the tasks directory,
 * without the suffix), sorted, NULL-terminated; free with fl_free_list. */
char **fl_task_names(void);
void fl_free_list(char **list);

/* $XDG_CONFIG_HOME/factlens (else ~/.config/factlens) and
 * $XDG_STATE_HOME/factlens (else ~/.local/state/factlens), created with its
 * parents when create is true. NULL when neither the variable nor HOME is
 * set. */
char *fl_config_dir(void);
char *fl_state_dir(bool create);

#endif
