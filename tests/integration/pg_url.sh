#!/usr/bin/env bash
# pg_url.sh VENDD - vendd and DATABASE_URL=postgres://: what it says about the connection.
#
# On the test PostgreSQL server (VEND_PG_STATE, ctest fixture vend_pg):
#  1. a URL with a password in the user info and one in ?password= (the server trusts, so
#     both connect): vendd starts, logs which server and database it opened, and neither
#     its log nor `vendd --check -v` shows the password;
#  2. a server that is not there (a closed port): vendd exits 1 at once, naming the
#     server and port, never the password;
#  3. a database that does not exist: exits 1, naming it.
# Every process started here is stopped and the directory removed on any exit.
set -euo pipefail

if [[ $# -ne 1 || ! -x $1 ]]; then
    echo "usage: pg_url.sh VENDD" >&2
    exit 64
fi
vendd=$1
[[ -r ${VEND_PG_STATE:-} ]] || {
    echo "pg_url.sh: VEND_PG_STATE is unreadable (ctest fixture vend_pg)" >&2
    exit 1
}
dir=$(sed -n 's/^dir=//p' "$VEND_PG_STATE")
port=$(sed -n 's/^port=//p' "$VEND_PG_STATE")
server=$(sed -n 's/^url=//p' "$VEND_PG_STATE")
secret="Pw-$$-s3cr3t"
work=$(mktemp -d "${TMPDIR:-/tmp}/vendd-pgurl-XXXXXX")
db="pgurl_$$"
pid=""

cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    psql -X -q "$server" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf -- "$work"
}
trap cleanup EXIT

fail() {
    echo "pg_url.sh: FAIL: $*" >&2
    [[ -f $work/vendd.log ]] && tail -n 20 "$work/vendd.log" >&2
    exit 1
}

no_secret() {
    ! grep -q -- "$secret" "$1" || fail "$2 shows the password: $(grep -- "$secret" "$1")"
}

# run_vendd URL: vendd in the background on URL, its log in $work/vendd.log.
run_vendd() {
    # Emptied here, not only by the background redirect below: a check of the log right after
    # this call must not read the previous vendd's lines.
    : >"$work/vendd.log"
    (cd "$work" && exec env -i PATH="$PATH" PORT=0 HOST=127.0.0.1 DATABASE_URL="$1" \
        MQTT_BROKER_URL=mqtt://127.0.0.1:1 MACHINE_ID=VM01 \
        ${ASAN_OPTIONS:+ASAN_OPTIONS="$ASAN_OPTIONS"} \
        ${UBSAN_OPTIONS:+UBSAN_OPTIONS="$UBSAN_OPTIONS"} "$vendd") >"$work/vendd.log" 2>&1 &
    pid=$!
}

# exits_1 WHAT: vendd (started by run_vendd) ends with status 1 within 10 s.
exits_1() {
    local status=0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "$1: vendd still running after 10 s"
    wait "$pid" || status=$?
    pid=""
    [[ $status -eq 1 ]] || fail "$1: exit status $status, wanted 1"
}

psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE \"$db\"" >/dev/null ||
    fail "cannot create database $db"

# ---- 1. passwords in the URL: it connects, and nothing shows them ------------------------
for url in "postgresql://vendd:$secret@/$db?host=$dir&port=$port" \
    "postgresql://vendd@/$db?host=$dir&password=$secret&port=$port"; do
    env -i PATH="$PATH" DATABASE_URL="$url" "$vendd" --check -v >"$work/check.out" 2>&1 ||
        fail "vendd --check -v refused '$url': $(cat "$work/check.out")"
    grep -q '^DATABASE_URL=postgresql://vendd' "$work/check.out" ||
        fail "--check -v does not show the database URL: $(cat "$work/check.out")"
    no_secret "$work/check.out" "vendd --check -v"
    run_vendd "$url"
    for ((i = 0; i < 100; i++)); do
        grep -q "HTTP listening" "$work/vendd.log" && break
        kill -0 "$pid" 2>/dev/null || fail "vendd exited on '$url'"
        sleep 0.1
    done
    grep -q "database: PostgreSQL [0-9.]*, database '$db' on $dir port $port as 'vendd'" \
        "$work/vendd.log" || fail "vendd does not name the database it opened"
    kill "$pid"
    wait "$pid" || fail "vendd did not stop cleanly on SIGTERM"
    pid=""
    no_secret "$work/vendd.log" "vendd's log"
done

# ---- 2. no server there: one line naming it, exit 1 ----------------------------------------
closed=""
for _ in 1 2 3 4 5 6 7 8; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        closed=$p
        break
    fi
done
[[ -n $closed ]] || fail "no closed loopback port found"
run_vendd "postgres://vendd:$secret@127.0.0.1:$closed/$db"
exits_1 "no server"
grep -q "cannot connect to PostgreSQL database (postgresql://...): connection to server at \"127.0.0.1\", port $closed failed" \
    "$work/vendd.log" || fail "the refused connection is not named by server and port"
no_secret "$work/vendd.log" "vendd's log (no server)"

# ---- 3. no such database: named ------------------------------------------------------------
run_vendd "postgresql://vendd@/nosuch_$db?host=$dir&port=$port&password=$secret"
exits_1 "no database"
grep -q "database \"nosuch_$db\" does not exist" "$work/vendd.log" ||
    fail "the missing database is not named"
no_secret "$work/vendd.log" "vendd's log (no database)"

echo "pg_url.sh: PASS"
