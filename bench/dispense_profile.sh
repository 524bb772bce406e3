#!/usr/bin/env bash
#
# dispense_profile.sh - vendd's instructions per dispense order, counted by callgrind: the
# timed part of bench/dispload (trigger, command, result, their group commits), not the
# orders' creation. Deterministic where the round trip's milliseconds are not on a shared
# box, so it compares two builds. docs/BENCH.md "Instructions per dispense order".
#
#   bench/dispense_profile.sh BUILD_DIR [RATE] [SECONDS]       (default 100 orders/s, 10 s)
#
# 1. A private mosquitto (prod.conf's queue lines, as fleet_bench.sh); vendd under
#    `valgrind --tool=callgrind` on a fresh database; 200 machines vm00001.. registered
#    through the API with slot 1 (Cola, stock 1000), as dispload expects.
# 2. The baseline: dispload --create-only 1 creates RATE x SECONDS manual orders, and vendd
#    is stopped (SIGTERM). The run: the same from a fresh database, then dispload triggers
#    the orders at RATE over the 200 machines, which answer at once.
#    Instructions per order = (Ir(run) - Ir(baseline)) / completed orders: the trigger, the
#    command, the result, their group commits, the idle loop turns in between.
# The run's callgrind file is kept as $OUT_DIR/callgrind.dispense.out (OUT_DIR defaults to
# the working directory); its top functions are printed. callgrind makes vendd about 50
# times slower, so at 100 orders/s it falls behind and its groups hold many items (about
# 16 at 100/s): the count per order leaves out most of the per-commit cost that a group of
# one pays. Compare builds at the same RATE, and check that their group_apply call counts
# (callgrind_annotate --inclusive=yes) match.
set -euo pipefail

build=$(realpath "${1:?usage: dispense_profile.sh BUILD_DIR [RATE] [SECONDS]}")
RATE=${2:-100}
SECONDS_RUN=${3:-10}
MACHINES=200
out_dir=$(realpath "${OUT_DIR:-.}")
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/bench
vendd=$build/daemon/vendd
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for b in "$bin/dispload" "$bin/httpload" "$vendd"; do
    [[ -x $b ]] || {
        echo "dispense_profile: $b is missing; build first" >&2
        exit 1
    }
done
command -v valgrind >/dev/null || {
    echo "dispense_profile: valgrind is not installed" >&2
    exit 1
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/dispense-profile-XXXXXX")
pids=()
log() { printf 'dispense_profile: %s\n' "$*" >&2; }
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
# run NAME CREATE_ONLY: a fresh database, vendd under callgrind, the machines set up,
# dispload; prints the run's instruction count.
run() {
    local name=$1 create_only=$2 up=0
    rm -f "$dir"/vendd.db*
    (cd "$dir" && exec env -i PATH="$PATH" PORT="$hport" HOST=127.0.0.1 \
        DATABASE_URL="sqlite:$dir/vendd.db" MQTT_BROKER_URL="mqtt://127.0.0.1:$mport" \
        MQTT_CLIENT_ID="vendd-prof-$name" valgrind --tool=callgrind \
        --callgrind-out-file="$dir/cg.$name" --dump-instr=no --separate-threads=no \
        "$vendd" >>"$dir/vendd.log" 2>&1) &
    vpid=$!
    pids+=("$vpid")
    for _ in $(seq 1200); do
        if curl -sf "127.0.0.1:$hport/health" 2>/dev/null | grep -q '"mqtt_connected":true'; then
            up=1
            break
        fi
        sleep 0.1
    done
    ((up)) || die "vendd did not come up (log: $dir/vendd.log)"
    "$bin/httpload" --port "$hport" --conns 1 --requests "$dir/setup.txt" >/dev/null ||
        die "machine set-up failed"
    "$bin/dispload" --http-port "$hport" --mqtt-port "$mport" --db "$dir/vendd.db" \
        --machines "$MACHINES" --rate "$RATE" --seconds "$SECONDS_RUN" \
        --create-only "$create_only" >"$dir/dispload.$name" 2>>"$dir/dispload.log" || true
    kill -TERM "$vpid"
    wait "$vpid" 2>/dev/null || true
    awk '/^totals:/ { print $2 }' "$dir/cg.$name"
}

awk -v n="$MACHINES" 'BEGIN { for (i = 1; i <= n; i++) {
    printf "POST /api/machines {\"id\":\"vm%05d\"}\n", i
    printf "PUT /api/machines/vm%05d/slots/1 {\"product_name\":\"Cola\",\"price\":5000,\"capacity\":1000,\"current_stock\":1000}\n", i } }' \
    >"$dir/setup.txt"
base_ir=$(run base 1)
ir=$(run load 0)
sed 's/^/dispense_profile: /' "$dir/dispload.load" >&2
done_n=$(sed -n 's/.*completed=\([0-9]*\).*/\1/p' "$dir/dispload.load")
((${done_n:-0} > 0)) || die "no order completed (log: $dir/dispload.log, $dir/vendd.log)"
cp "$dir/cg.load" "$out_dir/callgrind.dispense.out"
printf 'dispense_profile: %d orders at %s/s, %d instructions per order (run %d - baseline %d Ir)\n' \
    "$done_n" "$RATE" $(((ir - base_ir) / done_n)) "$ir" "$base_ir"
callgrind_annotate --inclusive=no "$out_dir/callgrind.dispense.out" 2>/dev/null | sed -n '1,45p' |
    grep -E '^ *[0-9,]+ ' | head -30
