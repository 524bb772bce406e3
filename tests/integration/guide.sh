#!/usr/bin/env bash
# guide.sh VENDD - the integration guide's "Testing MQTT Integration", verbatim.
#
# Starts mosquitto with `make run`'s config (deploy/mosquitto/dev.conf, persistence on) on
# a random loopback port and VENDD on a fresh SQLite file in a temporary directory (HTTP
# port chosen by the kernel: PORT=0), creates slot 1 and the manual order test-order-123
# through the API, then runs the guide's three terminals and its three SQL checks
# byte-for-byte as the guide prints them (docs/GUIDE-TEST.md).
#
# With VEND_TEST_DB=pg, vendd runs on a fresh database of the test PostgreSQL server whose
# state file VEND_PG_STATE names (tests/support/pgcluster, ctest fixture vend_pg), and the
# same three queries run with `psql` instead of `sqlite3`; the database is dropped on exit.
#
# The guide's commands name localhost:1883 and localhost:3001. They stay unedited; the
# clients' own option files point them at the test's ports instead:
#   $XDG_CONFIG_HOME/mosquitto_sub, .../mosquitto_pub   "-p <broker port>"
#   $CURL_HOME/.curlrc                                 "connect-to = localhost:3001:..."
#
# Every process started here is stopped and the directory removed on any exit.
# Every wait is bounded. Exit status 0 = the guide works as written.
set -euo pipefail
# shellcheck source=tests/integration/dev-broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/dev-broker.sh"

if [[ $# -ne 1 || ! -x $1 ]]; then
    echo "usage: guide.sh VENDD" >&2
    exit 64
fi
vendd=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")

work=$(mktemp -d "${TMPDIR:-/tmp}/vendd-guide-XXXXXX")
broker_pid=""
vendd_pid=""
sub_pid=""
pg_server="" # the test server's URL, when on PostgreSQL
pg_db=""

stop() {
    local pid=$1
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    stop "$sub_pid"
    stop "$vendd_pid"
    stop "$broker_pid"
    if [[ -n $pg_db ]]; then
        psql -X -q "$pg_server" -c "DROP DATABASE IF EXISTS \"$pg_db\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "guide.sh: FAIL: $*" >&2
    for f in vendd.log mosquitto.log sub.out; do
        if [[ -f $work/$f ]]; then
            echo "---- $f (last 40 lines) ----" >&2
            tail -n 40 "$work/$f" >&2
        fi
    done
    exit 1
}

# wait_for DESCRIPTION TENTHS COMMAND...: poll every 0.1 s, at most TENTHS times.
wait_for() {
    local what=$1 tries=$2
    shift 2
    for ((i = 0; i < tries; i++)); do
        if "$@"; then
            return 0
        fi
        sleep 0.1
    done
    fail "timed out waiting for $what"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- broker: random port, retried if taken ---------------------------------------------
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
broker_port=""
for attempt in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 40000))
    if tcp_open "$port"; then
        continue
    fi
    # dev.conf logs to stderr (unbuffered: a root mosquitto drops privileges and could not
    # open a file here); log_type all adds the subscriptions the wait below looks for.
    dev_broker_conf "$port" "$work/mosquitto.conf" "log_type all" || fail "cannot derive the broker config"
    mkdir -p "$work/var"
    (cd "$work" && exec "$mosquitto" -c mosquitto.conf) >"$work/mosquitto.log" 2>&1 &
    broker_pid=$!
    for ((i = 0; i < 50; i++)); do
        if tcp_open "$port" || ! kill -0 "$broker_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    if kill -0 "$broker_pid" 2>/dev/null && tcp_open "$port"; then
        broker_port=$port
        break
    fi
    stop "$broker_pid"
    broker_pid=""
done
[[ -n $broker_port ]] || fail "mosquitto did not start (attempt $attempt)"

# ---- vendd: only the variables it needs; a fresh database --------------------------------
db_url="sqlite:$work/vendd.db"
if [[ ${VEND_TEST_DB:-} == pg ]]; then
    [[ -r ${VEND_PG_STATE:-} ]] || fail "VEND_TEST_DB=pg but VEND_PG_STATE is unreadable (fixture vend_pg)"
    pg_server=$(sed -n 's/^url=//p' "$VEND_PG_STATE")
    [[ $pg_server == *@/*\?* ]] || fail "test server URL '$pg_server' is not user@/db?query"
    pg_db="guide_$$"
    psql -X -q -v ON_ERROR_STOP=1 "$pg_server" -c "CREATE DATABASE \"$pg_db\"" >/dev/null ||
        fail "cannot create database $pg_db"
    # pgcluster's URL with the test's database instead of "vendd".
    db_url="${pg_server%%@/*}@/$pg_db?${pg_server#*\?}"
fi
vendd_env=(PATH="$PATH" PORT=0 HOST=127.0.0.1 DATABASE_URL="$db_url"
    MQTT_BROKER_URL="mqtt://127.0.0.1:$broker_port" MACHINE_ID=VM01)
for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
    if [[ -n ${!v:-} ]]; then
        vendd_env+=("$v=${!v}")
    fi
done
(cd "$work" && exec env -i "${vendd_env[@]}" "$vendd") >"$work/vendd.log" 2>&1 &
vendd_pid=$!

http_port() { sed -n 's/.*HTTP listening on [^ ]* port \([0-9][0-9]*\).*/\1/p' "$work/vendd.log" 2>/dev/null; }
has_http_port() { [[ -n $(http_port) ]]; }
wait_for "vendd's HTTP port in its log" 100 has_http_port
api_port=$(http_port)
api="http://127.0.0.1:$api_port"

subscribed_all() {
    grep -q "MQTT connected to broker" "$work/vendd.log" &&
        [[ $(grep -c "Subscribed to vm/+/" "$work/vendd.log") -ge 3 ]]
}
wait_for "vendd to connect and subscribe" 100 subscribed_all

# ---- the guide's startup log lines: one connect, one line per topic ------------------------
[[ $(grep -c "MQTT connected to broker" "$work/vendd.log") -eq 1 ]] ||
    fail "vendd log: expected one 'MQTT connected to broker'"
for topic in telemetry dispense_result status; do
    n=$(grep -c "Subscribed to vm/+/$topic\$" "$work/vendd.log" || true)
    [[ $n -eq 1 ]] || fail "vendd log: expected one 'Subscribed to vm/+/$topic', saw $n"
done
# The guide's three subscriptions, each once. Their order is not the guide's any more:
# telemetry has its own MQTT session (so a telemetry flood cannot hold up results, SPEC §10),
# and the two sessions subscribe independently.

# ---- setup through the API (-q: ignore any user .curlrc) ---------------------------------
# api_call METHOD PATH BODY EXPECTED_STATUS_PATTERN
api_call() {
    local code
    code=$(curl -q -sS -o "$work/api.out" -w '%{http_code}' -X "$1" "$api$2" \
        -H 'Content-Type: application/json' -d "$3") || fail "$1 $2: curl failed"
    # shellcheck disable=SC2053 # $4 is a pattern
    [[ $code == $4 ]] || fail "$1 $2: HTTP $code, expected $4: $(cat "$work/api.out")"
}
api_call PUT /api/machines/VM01/slots/1 \
    '{"product_name":"Coca Cola","price":8000,"capacity":10,"current_stock":8,"motor_duration_ms":2150}' '20[01]'
api_call POST /api/orders '{"id":"test-order-123","slot":1,"payment_method":"manual"}' 201
grep -q '"status": *"PAID"' "$work/api.out" || fail "the manual order is not PAID: $(cat "$work/api.out")"

# ---- point the guide's unedited commands at this test's ports -----------------------------
mkdir -p "$work/config"
echo "-p $broker_port" >"$work/config/mosquitto_sub"
echo "-p $broker_port" >"$work/config/mosquitto_pub"
echo "connect-to = localhost:3001:127.0.0.1:$api_port" >"$work/config/.curlrc"
export XDG_CONFIG_HOME="$work/config" CURL_HOME="$work/config"
cd "$work"

# ---- Terminal 1 - Subscribe ke command (in the background, into a file) -------------------
subs_before=$(grep -c "vm/VM01/command (QoS" "$work/mosquitto.log" || true)
mosquitto_sub -h localhost -t "vm/VM01/command" -v >"$work/sub.out" 2>&1 &
sub_pid=$!
sub_ready() { [[ $(grep -c "vm/VM01/command (QoS" "$work/mosquitto.log" || true) -gt $subs_before ]]; }
wait_for "mosquitto_sub to subscribe (broker log)" 50 sub_ready

# ---- Terminal 2 - Trigger dispense ---------------------------------------------------------
{
curl -X POST http://localhost:3001/api/dispense/trigger \
  -H "Content-Type: application/json" \
  -d '{"order_id": "test-order-123"}'
} >"$work/trigger.out" 2>"$work/trigger.err" || fail "terminal 2: curl failed: $(cat "$work/trigger.err")"
grep -q '"status": *"DISPENSING"' "$work/trigger.out" &&
    grep -q '"command_sent": *true' "$work/trigger.out" ||
    fail "terminal 2: unexpected answer: $(cat "$work/trigger.out")"

expected='vm/VM01/command {"cmd":"dispense","slot":1,"orderId":"test-order-123","timeoutMs":2150}'
got_command() { [[ -s $work/sub.out ]]; }
wait_for "the command on vm/VM01/command" 50 got_command

# ---- Terminal 3 - Simulate ESP32 response --------------------------------------------------
mosquitto_pub -h localhost -t "vm/VM01/dispense_result" \
  -m '{
    "orderId": "test-order-123",
    "slot": 1,
    "success": true,
    "dropDetected": true,
    "durationMs": 1850,
    "error": null
  }' || fail "terminal 3: mosquitto_pub failed"

db="$work/vendd.db"
# query SQL: the rows, '|'-separated, with a header line: sqlite3's output, or psql's (no
# footer) on PostgreSQL, where NULL shows as nothing in both.
query() {
    if [[ -n $pg_db ]]; then
        psql -X -q -A -F '|' -P footer=off -v ON_ERROR_STOP=1 "$db_url" -c "$1"
    else
        sqlite3 -readonly -header -separator '|' "$db" "$1"
    fi
}
# value SQL: the first column of the first row, no header.
value() { query "$1" | sed -n 2p; }
order_completed() {
    [[ $(value "SELECT status FROM orders WHERE id = 'test-order-123'" 2>/dev/null) == COMPLETED ]]
}
wait_for "order test-order-123 to be COMPLETED" 50 order_completed

# A second command would show up now if one were ever sent; give it a moment, then stop.
sleep 0.5
stop "$sub_pid"
sub_pid=""
lines=$(wc -l <"$work/sub.out")
[[ $lines -eq 1 ]] || fail "terminal 1: expected exactly one message, got $lines: $(cat "$work/sub.out")"
[[ $(cat "$work/sub.out") == "$expected" ]] ||
    fail "terminal 1: got '$(cat "$work/sub.out")', expected '$expected'"

# ---- 3. Check Database: the guide's three queries, verbatim --------------------------------
# sql QUERY: the rows, '|'-separated, with a header line.
sql() { query "$1"; }
# col OUTPUT NAME ROW: the value of column NAME in data row ROW (1-based).
col() {
    awk -F'|' -v name="$2" -v row="$3" \
        'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
         NR == row + 1 { if (c) print $c }' <<<"$1"
}
rows() { echo $(($(wc -l <<<"$1") - 1)); }

echo "-- Check dispense logs"
q1=$(sql "SELECT * FROM dispense_logs ORDER BY command_sent_at DESC LIMIT 5;")
echo "$q1"
[[ $(rows "$q1") -eq 1 ]] || fail "dispense_logs: expected one row"
[[ $(col "$q1" order_id 1) == test-order-123 ]] || fail "dispense_logs: wrong order_id"
[[ $(col "$q1" status 1) == SUCCEEDED ]] || fail "dispense_logs: status is not SUCCEEDED"
[[ $(col "$q1" success 1) == 1 && $(col "$q1" drop_detected 1) == 1 ]] ||
    fail "dispense_logs: success/drop_detected not recorded"
[[ $(col "$q1" duration_ms 1) == 1850 ]] || fail "dispense_logs: duration_ms is not 1850"

echo "-- Check order status"
q2=$(sql "SELECT id, status, dispensed_at FROM orders WHERE id = 'test-order-123';")
echo "$q2"
[[ $(rows "$q2") -eq 1 ]] || fail "orders: expected one row"
[[ $(col "$q2" status 1) == COMPLETED ]] || fail "orders: status is not COMPLETED"
[[ -n $(col "$q2" dispensed_at 1) ]] || fail "orders: dispensed_at is not set"

echo "-- Check stock changes"
q3=$(sql "SELECT * FROM stock_logs ORDER BY created_at DESC LIMIT 5;")
echo "$q3"
dispense_rows=0
for ((r = 1; r <= $(rows "$q3"); r++)); do
    if [[ $(col "$q3" change_type "$r") == DISPENSE ]]; then
        dispense_rows=$((dispense_rows + 1))
        [[ $(col "$q3" quantity_before "$r") == 8 && $(col "$q3" quantity_after "$r") == 7 ]] ||
            fail "stock_logs: the DISPENSE row is not 8 -> 7"
        [[ $(col "$q3" order_id "$r") == test-order-123 ]] || fail "stock_logs: wrong order_id"
    fi
done
[[ $dispense_rows -eq 1 ]] || fail "stock_logs: expected one DISPENSE row, saw $dispense_rows"
stock=$(value "SELECT current_stock FROM slots WHERE machine_id = 'VM01' AND slot_number = 1")
[[ $stock == 7 ]] || fail "slots: current_stock is $stock, expected 7"

# ---- vendd shuts down cleanly -------------------------------------------------------------
kill -TERM "$vendd_pid"
status=0
wait "$vendd_pid" || status=$?
vendd_pid=""
[[ $status -eq 0 ]] || fail "vendd exited with status $status after SIGTERM"

if [[ -n $pg_db ]]; then
    grep -q "database: PostgreSQL" "$work/vendd.log" || fail "vendd did not run on PostgreSQL"
fi
echo "guide.sh: PASS: the guide's test works as written${pg_db:+ (PostgreSQL, psql)}"
