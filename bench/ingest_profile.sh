#!/usr/bin/env bash
#
# ingest_profile.sh - vendd's ingest cost in instructions per message, counted by callgrind:
# deterministic where wall-clock CPU is not (a shared, noisy box), so it can compare two
# builds or two commits. docs/BENCH.md "Instructions per message".
#
#   bench/ingest_profile.sh BUILD_DIR [telemetry|status] [N]      (default telemetry 20000)
#
# 1. A private mosquitto (prod.conf's queue lines, as fleet_bench.sh), vendd run natively
#    once: 1,000 machines vm00001.. registered through the API with slots 1 and 2 (stock in
#    both, as the fleet benchmark), and its MQTT sessions made (they persist 24 h).
# 2. vendd stopped; loadgen publishes N guide messages of KIND at QoS 1 from the 1,000
#    machines; the broker queues them for vendd's offline session.
# 3. vendd under `valgrind --tool=callgrind` drains the queue; once its count stops moving it
#    is stopped (SIGTERM). The same start and stop with nothing queued is the baseline
#    (startup, the status retained messages, shutdown); both use the same database copy.
#    Instructions per message = (Ir(run) - Ir(baseline)) / (count(run) - count(baseline)).
# The run's callgrind file is kept as $OUT_DIR/callgrind.KIND.out (OUT_DIR defaults to the
# working directory) for callgrind_annotate; its top functions are printed.
# INGEST_WRAP="strace -c -o %N" runs vendd under another tool instead (%N: an output file
# in OUT_DIR, one per run), e.g. to count the system calls callgrind does not see.
set -euo pipefail

build=$(realpath "${1:?usage: ingest_profile.sh BUILD_DIR [telemetry|status] [N]}")
kind=${2:-telemetry}
N=${3:-20000}
MACHINES=1000
RATE=4000
out_dir=$(realpath "${OUT_DIR:-.}")
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/bench
vendd=$build/daemon/vendd
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[[ $kind == telemetry || $kind == status ]] || {
    echo "ingest_profile: kind is telemetry or status, not '$kind'" >&2
    exit 2
}
for b in "$bin/loadgen" "$bin/httpload" "$vendd"; do
    [[ -x $b ]] || {
        echo "ingest_profile: $b is missing; build first" >&2
        exit 1
    }
done
command -v valgrind >/dev/null || {
    echo "ingest_profile: valgrind is not installed" >&2
    exit 1
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/ingest-profile-XXXXXX")
pids=()
log() { printf 'ingest_profile: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $dir"; else rm -rf -- "$dir"; fi
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
cat >"$dir/mosquitto.conf" <<EOF
user $(id -un)
listener $mport 127.0.0.1
allow_anonymous true
persistence false
sys_interval 1
log_dest file $dir/mosquitto.log
log_type error
log_type warning
$queue
EOF
"$mosquitto_bin" -c "$dir/mosquitto.conf" >"$dir/mosquitto.stderr" 2>&1 &
pids+=("$!")
wait_port "$mport" mosquitto

hport=$(free_port)
# start_vendd [valgrind args...]: vendd in $dir, under the given wrapper if any.
start_vendd() {
    (cd "$dir" && exec env -i PATH="$PATH" PORT="$hport" HOST=127.0.0.1 \
        DATABASE_URL="sqlite:$dir/vendd.db" MQTT_BROKER_URL="mqtt://127.0.0.1:$mport" \
        MQTT_CLIENT_ID=vendd-prof "$@" "$vendd" >>"$dir/vendd.log" 2>&1) &
    vpid=$!
    pids+=("$vpid")
    for _ in $(seq 1200); do
        curl -sf "127.0.0.1:$hport/health" 2>/dev/null | grep -q '"mqtt_connected":true' && return
        sleep 0.1
    done
    die "vendd did not come up (log: $dir/vendd.log)"
}
stop_vendd() {
    local kid
    # Under a wrapper that forks (strace), vendd is its child: stop vendd, the wrapper follows.
    kid=$(pgrep -P "$vpid" 2>/dev/null | head -1) || true
    kill -TERM "${kid:-$vpid}"
    wait "$vpid" 2>/dev/null || true
}
metric() {
    curl -s "127.0.0.1:$hport/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'
}
count() {
    if [[ $kind == telemetry ]]; then
        sqlite3 -readonly "$dir/vendd.db" 'SELECT coalesce(max(id), 0) FROM telemetry'
    else
        metric vendd_status_updates_total
    fi
}
# Wait until count() stops moving for 3 s; prints it.
settle() {
    local a b
    a=$(count)
    for _ in $(seq 2400); do
        sleep 3
        b=$(count)
        [[ $a == "$b" ]] && break
        a=$b
    done
    echo "$a"
}

start_vendd
awk -v n="$MACHINES" 'BEGIN { for (i = 1; i <= n; i++) printf "POST /api/machines {\"id\":\"vm%05d\"}\n", i }' \
    >"$dir/register.txt"
awk -v n="$MACHINES" 'BEGIN { for (i = 1; i <= n; i++) {
    printf "PUT /api/machines/vm%05d/slots/1 {\"product_name\":\"Cola\",\"price\":5000,\"capacity\":1000,\"current_stock\":1000}\n", i
    printf "PUT /api/machines/vm%05d/slots/2 {\"product_name\":\"Tea\",\"price\":4000,\"capacity\":10,\"current_stock\":10}\n", i } }' \
    >"$dir/slots.txt"
"$bin/httpload" --port "$hport" --conns 16 --requests "$dir/register.txt" >/dev/null ||
    die "registration failed"
"$bin/httpload" --port "$hport" --conns 16 --requests "$dir/slots.txt" >/dev/null ||
    die "slot set-up failed"
stop_vendd
cp "$dir/vendd.db" "$dir/seed.db"

# ir_of FILE: the total instruction count of a callgrind output file.
ir_of() { awk '/^totals:/ { print $2 }' "$1"; }

# run NAME PUBLISH(0|1): restore the seed, publish N if asked, drain under callgrind.
run() {
    local name=$1 publish=$2 line
    rm -f "$dir"/vendd.db*
    cp "$dir/seed.db" "$dir/vendd.db"
    if ((publish)); then
        line=$("$bin/loadgen" --port "$mport" --machines "$MACHINES" --qos 1 --window 10 \
            --kind "$kind" --rate "$RATE" --seconds $((N / RATE)) 2>>"$dir/loadgen.log") ||
            die "loadgen failed: $line"
        log "published: $line"
    fi
    if [[ -n ${INGEST_WRAP:-} ]]; then
        # shellcheck disable=SC2086 # a command line on purpose
        start_vendd ${INGEST_WRAP//%N/$out_dir\/wrap.$kind.$name}
    else
        start_vendd valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$name" \
            --dump-instr=no --separate-threads=no
    fi
    ran_count=$(settle)
    stop_vendd
    ran_ir=0
    [[ -n ${INGEST_WRAP:-} ]] || ran_ir=$(ir_of "$dir/cg.$name")
    log "$name: count=$ran_count Ir=$ran_ir"
}

run base 0
base_count=$ran_count base_ir=$ran_ir
run load 1
msgs=$((ran_count - base_count))
((msgs > 0)) || die "no message was processed (log: $dir/vendd.log)"
if [[ -n ${INGEST_WRAP:-} ]]; then
    log "$kind: $msgs messages under '$INGEST_WRAP' (its output: $out_dir/wrap.$kind.base, .load)"
    exit 0
fi
cp "$dir/cg.load" "$out_dir/callgrind.$kind.out"
printf 'ingest_profile: %s: %d messages, %d instructions per message (run %d - baseline %d Ir)\n' \
    "$kind" "$msgs" $(((ran_ir - base_ir) / msgs)) "$ran_ir" "$base_ir"
callgrind_annotate --inclusive=no "$out_dir/callgrind.$kind.out" 2>/dev/null | sed -n '1,45p' |
    grep -E '^ *[0-9,]+ ' | head -30
