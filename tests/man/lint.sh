#!/bin/sh
# lint.sh - the manual pages through `mandoc -T lint` at every level down to STYLE: any
# message fails, except that a page its SEE ALSO names is not installed on this machine
# (vendctl(1) before `make install`), which says nothing about the page itself.
# Usage: lint.sh MANDOC PAGE...
set -eu
mandoc=$1
shift
# mandoc exits non-zero for STYLE messages too: its output is the verdict.
out=$("$mandoc" -T lint -W style "$@" 2>&1 |
      grep -v -e 'referenced manual not found' -e 'outdated mandoc.db' || true)
if [ -n "$out" ]; then
    printf '%s\n' "$out"
    echo "lint.sh: mandoc -T lint found the problems above" >&2
    exit 1
fi
echo "lint.sh: $# page(s) clean: $*"
