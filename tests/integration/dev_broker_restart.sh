#!/usr/bin/env bash
# dev_broker_restart.sh VENDD - `make run`'s broker (deploy/mosquitto/dev.conf) keeps what
# vendd relies on across its own restart.
#
# A dispense is in flight; vendd stops; the machine publishes its result, which the broker
# queues in vendd's persistent session; the broker restarts; vendd starts again and must
# apply the result (the order COMPLETED, well before the unit's deadline). Without
# persistence in dev.conf the restart drops the session and the result with it, and the
# paid order would fail at its deadline although the product dropped.
#
# mosquitto on a random loopback port from a temporary directory holding var/ (dev.conf's
# persistence_location), vendd with PORT=0 on a fresh SQLite file there. Every process
# started here is stopped and the directory removed on any exit; every wait is bounded.
set -euo pipefail
# shellcheck source=tests/integration/dev-broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/dev-broker.sh"

if [[ $# -ne 1 || ! -x $1 ]]; then
    echo "usage: dev_broker_restart.sh VENDD" >&2
    exit 64
fi
vendd=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
work=$(mktemp -d "${TMPDIR:-/tmp}/vendd-devbroker-XXXXXX")
broker_pid=""
vendd_pid=""

stop() {
    local pid=$1
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    stop "$vendd_pid"
    stop "$broker_pid"
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "dev_broker_restart.sh: FAIL: $*" >&2
    for f in vendd.log mosquitto.log; do
        if [[ -f $work/$f ]]; then
            echo "---- $f (last 30 lines) ----" >&2
            tail -n 30 "$work/$f" >&2
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

# start_broker: dev.conf's broker on $port, from $work (var/ is relative to it).
start_broker() {
    (cd "$work" && exec "$mosquitto" -c mosquitto.conf) >>"$work/mosquitto.log" 2>&1 &
    broker_pid=$!
    for ((i = 0; i < 50; i++)); do
        if tcp_open "$port" || ! kill -0 "$broker_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    kill -0 "$broker_pid" 2>/dev/null && tcp_open "$port"
}

mkdir "$work/var"
broker_up=""
for attempt in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 40000))
    tcp_open "$port" && continue
    dev_broker_conf "$port" "$work/mosquitto.conf" || fail "cannot derive the broker config"
    if start_broker; then
        broker_up=yes
        break
    fi
    stop "$broker_pid"
done
[[ -n $broker_up ]] || fail "mosquitto did not start (attempt $attempt)"

# start_vendd: a fresh log each time, so the waits below see only this start.
start_vendd() {
    : >"$work/vendd.log"
    (cd "$work" && exec env -i PATH="$PATH" PORT=0 HOST=127.0.0.1 \
        DATABASE_URL="sqlite:$work/vendd.db" MQTT_BROKER_URL="mqtt://127.0.0.1:$port" \
        MACHINE_ID=VM01 ${ASAN_OPTIONS:+ASAN_OPTIONS="$ASAN_OPTIONS"} \
        ${UBSAN_OPTIONS:+UBSAN_OPTIONS="$UBSAN_OPTIONS"} \
        ${LSAN_OPTIONS:+LSAN_OPTIONS="$LSAN_OPTIONS"} "$vendd") >"$work/vendd.log" 2>&1 &
    vendd_pid=$!
    wait_for "vendd to subscribe" 150 grep -q "Subscribed to vm/+/status" "$work/vendd.log"
    api="http://127.0.0.1:$(sed -n 's/.*HTTP listening on [^ ]* port \([0-9]*\).*/\1/p' \
        "$work/vendd.log")"
}

stop_vendd() {
    local status=0
    kill -TERM "$vendd_pid"
    wait "$vendd_pid" || status=$?
    vendd_pid=""
    [[ $status -eq 0 ]] || fail "vendd exited with status $status after SIGTERM"
}

api_call() {
    local code
    code=$(curl -q -sS -o "$work/api.out" -w '%{http_code}' -X "$1" "$api$2" \
        -H 'Content-Type: application/json' -d "$3") || fail "$1 $2: curl failed"
    # shellcheck disable=SC2053 # $4 is a pattern
    [[ $code == $4 ]] || fail "$1 $2: HTTP $code, expected $4: $(cat "$work/api.out")"
}

order_status() { sqlite3 -readonly "$work/vendd.db" "SELECT status FROM orders WHERE id = 'dev-1'"; }
is_completed() { [[ $(order_status 2>/dev/null) == COMPLETED ]]; }

# ---- a dispense in flight; its deadline (60 s + grace) is far beyond this test -----------
start_vendd
api_call PUT /api/machines/VM01/slots/1 \
    '{"product_name":"Coca Cola","price":8000,"capacity":10,"current_stock":8,"motor_duration_ms":60000}' '20[01]'
api_call POST /api/orders '{"id":"dev-1","slot":1,"payment_method":"manual"}' 201
api_call POST /api/dispense/trigger '{"order_id":"dev-1"}' 200
grep -q '"command_sent": *true' "$work/api.out" || fail "trigger: $(cat "$work/api.out")"
stop_vendd

# ---- the machine answers while vendd is away; then the broker restarts ---------------------
mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t vm/VM01/dispense_result \
    -m '{"orderId":"dev-1","slot":1,"success":true,"dropDetected":true,"durationMs":1850,"error":null}' ||
    fail "mosquitto_pub failed"
stop "$broker_pid"
broker_pid=""
[[ -s $work/var/mosquitto.db ]] || fail "the broker saved nothing in var/ (persistence off?)"
start_broker || fail "mosquitto did not restart on port $port"

# ---- vendd is back: the result waited for it ----------------------------------------------
start_vendd
wait_for "order dev-1 to be COMPLETED by the result held across the broker restart" 100 is_completed
stop_vendd
echo "dev_broker_restart.sh: PASS: dev.conf keeps vendd's session across a broker restart"
