#!/usr/bin/env bash
# README's two commands, each in a fresh clone with a fresh virtual environment, timed; the result file
# names the commit, the machine and each part's seconds:
#
#     bash benchmarks/fresh_machine.sh OUT.md [COMMIT]
#
# The commands are read from README.md as it is at COMMIT (default HEAD; the first code block under "##
# Fresh machine", and the one after the ci:test-command marker, as .ci/run reads it) and run as written in
# clones checked out at COMMIT, split at their last " && " into the installation and what follows it. An
# older commit on the same machine is the fair baseline for a timing (a figure from another machine is
# not). The clones are made beside this repository, so that the tests find ../shared as CI does, and
# removed at the end (KEEP=1 keeps them, with their logs).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash benchmarks/fresh_machine.sh OUT.md [COMMIT]" >&2
    exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "$1")
[ -d "$(dirname "$out")" ] || { echo "OUT.md: folder $(dirname "$out") does not exist" >&2; exit 2; }
commit=$(git -C "$repo" rev-parse --verify -q "${2:-HEAD}^{commit}") || {
    echo "COMMIT: '${2:-HEAD}' is not a commit of $repo" >&2
    exit 2
}
readme=$(git -C "$repo" show "$commit:README.md")
first=$(awk '/^## Fresh machine/{found=1} found && /^```bash/{inblock=1; next} inblock && /^```/{exit} inblock{print}' <<<"$readme")
tests=$(awk '/<!-- ci:test-command -->/{found=1; next} found && /^```/{if (inblock) exit; inblock=1; next} inblock{print}' <<<"$readme")
for name in first tests; do
    if [ -z "${!name}" ] || [[ "${!name}" != *" && "* ]]; then
        echo "README.md: the $name command is missing or has no ' && ' to split it at" >&2
        exit 1
    fi
done

rows=()
clones=()
# time_command NAME COMMAND: a fresh clone and venv; appends "install seconds|run seconds|status|summary"
time_command() {
    local clone log install run start middle end status summary
    clone=$(mktemp -d "$(dirname "$repo")/fresh-XXXXXX")
    clones+=("$clone")
    git clone -q "$repo" "$clone"
    git -C "$clone" checkout -q "$commit"
    log="$clone.log"
    install=${2% && *}
    run=${2##* && }
    echo "$1: $clone ($log)" >&2
    status=0
    (
        cd "$clone"
        python3 -m venv .venv
        # shellcheck disable=SC1091
        . .venv/bin/activate
        start=$(date +%s.%N)
        eval "$install" >"$log" 2>&1 || exit 11
        middle=$(date +%s.%N)
        eval "$run" >>"$log" 2>&1 </dev/null || { echo "$start $middle $(date +%s.%N)" >"$clone.times"; exit 12; }
        end=$(date +%s.%N)
        echo "$start $middle $end" >"$clone.times"
    ) || status=$?
    if [ "$status" -eq 11 ]; then
        echo "$1: the installation failed; see $log" >&2
        KEEP=1
        exit 1
    fi
    read -r start middle end <"$clone.times"
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//' || true)
    rows+=("$(awk -v a="$start" -v b="$middle" -v c="$end" 'BEGIN{printf "%.1f|%.1f", b - a, c - b}')|$(
        [ "$status" -eq 0 ] && echo 0 || echo 1)|$summary")
}

time_command "first command" "$first"
time_command "test command" "$tests"

IFS='|' read -r first_install first_run first_status _ <<<"${rows[0]}"
IFS='|' read -r tests_install tests_run tests_status tests_summary <<<"${rows[1]}"
processor=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || uname -m)
{
    echo "# README's two commands on fresh virtual environments"
    echo
    echo "- command: \`bash benchmarks/fresh_machine.sh $*\`: each README command in a fresh clone of commit"
    echo "  \`${commit:0:12}\` beside the repository, in a new \`python3 -m venv\`, run as written"
    echo "- machine: $processor, $(nproc) cores ($(uname -m)), $(python3 --version); pip's cache as this machine had it"
    echo "- date: $(date -u +%Y-%m-%d)"
    echo
    echo "| command | part | seconds | exit status |"
    echo "|---|---|---:|---:|"
    echo "| first | \`${first% && *}\` | $first_install | 0 |"
    echo "| first | \`${first##* && }\` | $first_run | $first_status |"
    echo "| tests | \`${tests% && *}\` | $tests_install | 0 |"
    echo "| tests | \`${tests##* && }\` ($tests_summary) | $tests_run | $tests_status |"
} >"$out.partial"
mv "$out.partial" "$out"
cat "$out"
if [ -z "${KEEP:-}" ]; then
    for clone in "${clones[@]}"; do rm -rf "$clone" "$clone.log" "$clone.times"; done
fi
[ "$first_status" -eq 0 ] && [ "$tests_status" -eq 0 ]
