#!/usr/bin/env bash
#
# stock_churn.sh - GET /api/stock/{machine} req/s while machines send status messages, each of
# which changes the machines table that the cached stock answer depends on (http_cache.h,
# slots_stock_reads in domain/slots.c). docs/BENCH.md "/api/stock under status traffic".
#
#   bench/stock_churn.sh BUILD_DIR            (N=1000 machines, 2 slots each)
#
# A private mosquitto (prod.conf's queue lines), vendd on a fresh SQLite file, N machines
# registered through the API; then, for status rates 0, 200, 1000 and 5000 msg/s (bench/loadgen
# at QoS 1 over the N machines), two 5 s runs of bench/httpload over the N stock paths, started
# 2 s into the status traffic. Prints one line per run. Compare builds in one sitting, in turn:
# a shared box moves these by a fifth from one run to the next.
set -euo pipefail

build=$(realpath "${1:?usage: stock_churn.sh BUILD_DIR}")
N=${N:-1000}
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/bench
vendd=$build/daemon/vendd
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for b in "$bin/loadgen" "$bin/httpload" "$vendd"; do
    [[ -x $b ]] || {
        echo "stock_churn: $b is missing; build first" >&2
        exit 1
    }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/stock-churn-XXXXXX")
pids=()
die() {
    echo "stock_churn: $*" >&2
    exit 1
}
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf -- "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "$2 does not listen on port $1"
}

queue=$(grep -E '^(set_tcp_nodelay|max_inflight_messages|max_queued_messages|max_queued_bytes|message_size_limit)[[:space:]]' \
    "$here/../deploy/mosquitto/prod.conf") || die "cannot read the queue settings of prod.conf"
mport=$(free_port)
cat >"$dir/mosquitto.conf" <<EOC
user $(id -un)
listener $mport 127.0.0.1
allow_anonymous true
persistence false
log_dest file $dir/mosquitto.log
log_type error
log_type warning
$queue
EOC
"$mosquitto_bin" -c "$dir/mosquitto.conf" >"$dir/mosquitto.stderr" 2>&1 &
pids+=("$!")
wait_port "$mport" mosquitto

hport=$(free_port)
(cd "$dir" && exec env -i PATH="$PATH" PORT="$hport" HOST=127.0.0.1 \
    DATABASE_URL="sqlite:$dir/vendd.db" MQTT_BROKER_URL="mqtt://127.0.0.1:$mport" \
    "$vendd" >>"$dir/vendd.log" 2>&1) &
pids+=("$!")
up=0
for _ in $(seq 300); do
    if curl -sf "127.0.0.1:$hport/health" 2>/dev/null | grep -q '"mqtt_connected":true'; then
        up=1
        break
    fi
    sleep 0.1
done
((up)) || die "vendd did not come up (log: $dir/vendd.log)"

awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) {
    printf "POST /api/machines {\"id\":\"vm%05d\"}\n", i
    printf "PUT /api/machines/vm%05d/slots/1 {\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,\"current_stock\":5}\n", i
    printf "PUT /api/machines/vm%05d/slots/2 {\"product_name\":\"Chips\",\"price\":7000,\"capacity\":10,\"current_stock\":5}\n", i } }' \
    >"$dir/setup.txt"
"$bin/httpload" --port "$hport" --conns 1 --requests "$dir/setup.txt" >/dev/null ||
    die "machine set-up failed"
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "/api/stock/vm%05d\n", i }' >"$dir/stock.txt"

for rate in 0 200 1000 5000; do
    for run in 1 2; do
        lg=0
        if ((rate > 0)); then
            "$bin/loadgen" --port "$mport" --machines "$N" --qos 1 --kind status --rate "$rate" \
                --seconds 9 >"$dir/loadgen.out" 2>>"$dir/loadgen.log" &
            lg=$!
            sleep 2
        fi
        line=$("$bin/httpload" --port "$hport" --seconds 5 --paths "$dir/stock.txt") || true
        ((lg == 0)) || wait "$lg" || true
        printf 'stock_churn: status %5d msg/s, run %d: GET /api/stock %s req/s\n' "$rate" "$run" \
            "$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$line")"
    done
done
