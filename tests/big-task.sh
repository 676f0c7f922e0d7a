#!/bin/bash
# big-task.sh IN OUT: the task IN with each of its main templates twelve
# times ("Note K: ..."), written to OUT. For the tests that cancel long work
# on the demo model: with every country (data/tasks/country_capital_all.json,
# 2,580 prompts) its decomposition fit takes 0.2 s, too short to be seen and
# cancelled; the big task has 30,960 prompts. Expects one template per line,
# as the bundled task files have them.
set -eu
awk -v K=12 '
/"templates": \[/ { print; intpl = 1; next }
intpl && /^ *\],?$/ {
	n = 0
	for (k = 1; k <= K; k++)
		for (i = 1; i <= cnt; i++)
			out[++n] = "  \"Note " k ": " t[i] "\""
	for (i = 1; i <= n; i++)
		print out[i] (i < n ? "," : "")
	intpl = 0; print; next
}
intpl { s = $0; sub(/^ *"/, "", s); sub(/",?$/, "", s); t[++cnt] = s; next }
{ print }' "$1" > "$2"
grep -q '"Note 12: ' "$2"
