#!/usr/bin/env bash
# run-golden.sh - golden-file tests of the configuration (OpenBSD bgpd regress style).
#
#   run-golden.sh VENDD CASE.env...       run each case, diff against CASE.out
#   run-golden.sh --example VENDD FILE    FILE used as .env must give "configuration OK",
#                                         also with its "#KEY=value" lines uncommented
#
# A case NNN-name is up to four files side by side:
#   NNN-name.env     the whole environment, one KEY=VALUE per line ('#' lines and
#                    blank lines skipped); vendd runs with `env -i` and only these
#   NNN-name.dotenv  optional: copied to .env in a fresh, empty working directory
#   NNN-name.args    optional: the arguments on one line (default: --check -v)
#   NNN-name.out     the exact combined stdout+stderr, then a line "exit <status>"
# VEND_GOLDEN_UPDATE=1 rewrites the .out files from what vendd printed.
set -euo pipefail

usage() {
    echo "usage: run-golden.sh VENDD CASE.env... | --example VENDD FILE" >&2
    exit 64
}

workdir=""
cleanup() {
    if [[ -n $workdir ]]; then
        rm -rf -- "$workdir"
    fi
}
trap cleanup EXIT

# run_vendd VENDD OUT ARGS... with the environment in the array `vars`, in $workdir.
run_vendd() {
    local vendd=$1 out=$2 status
    shift 2
    set +e
    (cd "$workdir" && env -i "${vars[@]}" "$vendd" "$@") >"$out" 2>&1
    status=$?
    set -e
    echo "exit $status" >>"$out"
}

run_case() {
    local vendd=$1 case=$2 base args=() vars=()
    base=${case%.env}
    workdir=$(mktemp -d)
    if [[ -f $base.dotenv ]]; then
        cp -- "$base.dotenv" "$workdir/.env"
    fi
    if [[ -f $base.args ]]; then
        read -r -a args <"$base.args" || true
    else
        args=(--check -v)
    fi
    mapfile -t vars < <(grep -v -e '^#' -e '^[[:space:]]*$' -- "$case" || true)
    run_vendd "$vendd" "$workdir/actual" "${args[@]}"
    local rc=0
    if [[ ${VEND_GOLDEN_UPDATE:-0} == 1 ]]; then
        cp -- "$workdir/actual" "$base.out"
        echo "updated $base.out"
    elif ! diff -u -- "$base.out" "$workdir/actual"; then
        echo "FAIL: $(basename -- "$base") (expected $base.out, got the + lines)" >&2
        rc=1
    fi
    cleanup
    workdir=""
    return "$rc"
}

[[ $# -ge 2 ]] || usage
if [[ $1 == --example ]]; then
    [[ $# -eq 3 ]] || usage
    vendd=$(realpath -- "$2")
    vars=()
    workdir=$(mktemp -d)
    # As shipped (all commented out), then with every "#KEY=value" line uncommented:
    # the sample values must be valid too.
    for variant in shipped uncommented; do
        if [[ $variant == shipped ]]; then
            cp -- "$3" "$workdir/.env"
        else
            sed -E 's/^#([A-Z_]+=)/\1/' -- "$3" >"$workdir/.env"
        fi
        run_vendd "$vendd" "$workdir/actual" --check
        if [[ $(cat -- "$workdir/actual") != $'configuration OK\nexit 0' ]]; then
            echo "FAIL: $3 ($variant) does not check OK:" >&2
            cat -- "$workdir/actual" >&2
            exit 1
        fi
    done
    exit 0
fi

vendd=$(realpath -- "$1")
shift
failed=0
for case in "$@"; do
    run_case "$vendd" "$case" || failed=1
done
exit "$failed"
