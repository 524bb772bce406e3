#!/usr/bin/env bash
# http_instr.sh BUILD_DIR - instructions per request of vendd's hot reads, and of the
# libmicrohttpd hello-world, under callgrind (docs/BENCH.md "Instructions per request").
#
# Wall-clock rates swing with whatever else runs on the box; instruction counts do not. What
# it starts (127.0.0.1, free ports, a fresh temporary directory, stopped by PID at the end): a
# private mosquitto, vendd on a fresh SQLite file (N machines with two slots each registered
# through the API, then R orders dispensed by bench/dispload so that they are COMPLETED with
# their unit), then vendd again under valgrind --tool=callgrind with instrumentation off, and
# bench/httpload in requests mode, one request a line, with instrumentation on only around
# each run:
#   stock miss   GET /api/stock/{machine} for M different machines, never asked before
#   stock again  the same M again (kept answers, while the data version holds)
#   order miss   GET /api/orders/{id} for the completed orders
#   order again  the same again
#   hello        GET / of bench/hello, as many as the stock runs
# Each line: the instructions (callgrind's Ir: vendd's process, user space, every library)
# divided by the requests. Knobs: N (machines, 10000), M (stock requests, 2000), R (orders,
# 2000), VENDD (the vendd binary, default BUILD_DIR's: another build's for a before/after).
# Needs valgrind (callgrind_control), mosquitto, sqlite3, curl. About 3 minutes.
set -euo pipefail

if [[ $# -ne 1 || ! -d $1 ]]; then
    echo "usage: bench/http_instr.sh BUILD_DIR" >&2
    exit 64
fi
build=$(realpath "$1")
bin=$build/bench
vendd=${VENDD:-$build/daemon/vendd}
N=${N:-10000} M=${M:-2000} R=${R:-2000}
for t in valgrind callgrind_control sqlite3 curl; do
    command -v "$t" >/dev/null || {
        echo "http_instr: '$t' is not installed" >&2
        exit 1
    }
done
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
dir=$(mktemp -d "${TMPDIR:-/tmp}/http-instr-XXXXXX")
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
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
    echo "http_instr: no free port" >&2
    exit 1
}

mport=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_inflight_messages 0\nmax_queued_messages 100000\n' \
    "$mport" >"$dir/mosquitto.conf"
"$mosquitto_bin" -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
pids+=("$!")

# vendd [WRAPPER...]: started on the same file and port each time. HOST is vendd's listen
# address; valgrind also names its control pipe after it, so callgrind_control is given it.
hport=$(free_port)
start_vendd() {
    (cd "$dir" && exec env -i PATH="$PATH" PORT="$hport" HOST=127.0.0.1 \
        DATABASE_URL="sqlite:$dir/vendd.db" MQTT_BROKER_URL="mqtt://127.0.0.1:$mport" \
        MQTT_CLIENT_ID=vendd-instr "$@" "$vendd" >>"$dir/vendd.log" 2>&1) &
    vpid=$!
    pids+=("$vpid")
    for _ in $(seq 1800); do
        curl -sf "127.0.0.1:$hport/health" 2>/dev/null | grep -q '"mqtt_connected":true' && return
        sleep 0.1
    done
    echo "http_instr: vendd did not come up (log: $dir/vendd.log)" >&2
    exit 1
}
ctl() { env -i PATH="$PATH" HOST=127.0.0.1 callgrind_control "$@" >/dev/null 2>&1; }

start_vendd
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "POST /api/machines {\"id\":\"vm%05d\"}\n", i }' \
    >"$dir/register.txt"
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) {
    printf "PUT /api/machines/vm%05d/slots/1 {\"product_name\":\"Cola\",\"price\":5000,\"capacity\":1000,\"current_stock\":1000}\n", i
    printf "PUT /api/machines/vm%05d/slots/2 {\"product_name\":\"Tea\",\"price\":4000,\"capacity\":10,\"current_stock\":10}\n", i } }' \
    >"$dir/slots.txt"
"$bin/httpload" --port "$hport" --conns 16 --requests "$dir/register.txt" >/dev/null
"$bin/httpload" --port "$hport" --conns 16 --requests "$dir/slots.txt" >/dev/null
"$bin/dispload" --http-port "$hport" --mqtt-port "$mport" --db "$dir/vendd.db" --machines 200 \
    --rate 500 --seconds $(((R + 499) / 500)) --id-prefix hi- >"$dir/dispload.out" 2>&1
kill -TERM "$vpid"
wait "$vpid" 2>/dev/null || true

start_vendd valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.%p"
awk -v m="$M" -v n="$N" 'BEGIN { for (i = 0; i < m; i++) printf "GET /api/stock/vm%05d\n", 1 + i % n }' \
    >"$dir/stock.txt"
sqlite3 -readonly "$dir/vendd.db" \
    "SELECT 'GET /api/orders/' || id FROM orders WHERE status = 'COMPLETED' LIMIT $R" >"$dir/orders.txt"

# run LABEL FILE PORT: instructions per request of the process being instrumented.
run() {
    local n before after
    n=$(wc -l <"$2")
    ctl -z "$ipid"
    ctl -i on "$ipid"
    "$bin/httpload" --port "$3" --conns 16 --requests "$2" >"$dir/httpload.out" ||
        echo "http_instr: $1: $(cat "$dir/httpload.out")" >&2
    ctl -i off "$ipid"
    before=$(find "$dir" -name 'cg.*' | wc -l)
    ctl -d "$1" "$ipid"
    for _ in $(seq 100); do
        after=$(find "$dir" -name 'cg.*' | wc -l)
        ((after > before)) && break
        sleep 0.1
    done
    awk -v n="$n" -v what="$1" '/^totals:/ { printf "%s %d %.0f\n", what, n, $2 / n }' \
        "$(grep -l "^desc: Trigger: dump $1\$" "$dir"/cg.*)" >>"$dir/results"
}
ipid=$vpid
run stock-miss "$dir/stock.txt" "$hport"
run stock-again "$dir/stock.txt" "$hport"
run order-miss "$dir/orders.txt" "$hport"
run order-again "$dir/orders.txt" "$hport"
kill -TERM "$vpid"
wait "$vpid" 2>/dev/null || true

env HOST=127.0.0.1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.%p" \
    "$bin/hello" --port 0 >"$dir/hello.out" 2>&1 &
ipid=$!
pids+=("$ipid")
for _ in $(seq 200); do grep -q '^hello: port' "$dir/hello.out" 2>/dev/null && break; sleep 0.05; done
awk -v m="$M" 'BEGIN { for (i = 0; i < m; i++) print "GET /" }' >"$dir/hello.txt"
run hello "$dir/hello.txt" "$(awk '/^hello: port/ { print $3 }' "$dir/hello.out")"
# hello / each: what the instruction counts say of the rate ratio the benchmark measures
# (libmicrohttpd's memset of its connection pool is a large, cheap share of both).
awk '{ what[NR] = $1; n[NR] = $2; ir[NR] = $3; if ($1 == "hello") h = $3 }
    END { for (i = 1; i <= NR; i++)
        printf "%-12s %6d requests %8d instructions/request   hello/this %.2f\n", what[i], n[i], ir[i], h / ir[i] }' \
    "$dir/results"
