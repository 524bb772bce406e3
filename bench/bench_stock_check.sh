#!/usr/bin/env bash
# bench_stock_check.sh VENDD - the cost of the stock check as open orders pile up (issue 7:
# "that check must cost the same with 3 open orders or 30,000"). A real vendd and mosquitto on
# loopback; the median time of 100 manual orders (POST /api/orders, each promising a unit of
# slot 1) with 3 open orders elsewhere, then with 3,003 (PAID, never triggered).
# Prints "stock check: open=N median=X ms".
set -euo pipefail
vendd=$(realpath "$1")
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
mport=$((port + 1))
cleanup() {
    [[ -n ${vpid:-} ]] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
    [[ -n ${mpid:-} ]] && kill "$mpid" 2>/dev/null && wait "$mpid" 2>/dev/null
    rm -rf -- "$dir"
}
trap cleanup EXIT
cd "$dir"
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mport" >mq.conf
mosquitto -c mq.conf >/dev/null 2>&1 &
mpid=$!
PORT=$port DATABASE_URL=sqlite:$dir/v.db MQTT_BROKER_URL=mqtt://127.0.0.1:$mport \
    "$vendd" >vendd.log 2>&1 &
vpid=$!
for _ in $(seq 50); do
    curl -sf "localhost:$port/health" >/dev/null && break
    sleep 0.1
done
order() {
    curl -s -o /dev/null -w '%{time_total}\n' -X POST "localhost:$port/api/orders" \
        -H 'Content-Type: application/json' -d "{\"slot\":$1,\"payment_method\":\"manual\"}"
}
median() {
    for _ in $(seq 100); do order 1; done | sort -n |
        awk '{a[NR] = $1} END { printf "%.3f", a[int((NR + 1) / 2)] * 1000 }'
}
for s in 1 2 3 4; do
    curl -sf -X PUT "localhost:$port/api/machines/VM01/slots/$s" \
        -H 'Content-Type: application/json' \
        -d "{\"product_name\":\"P$s\",\"price\":1000,\"capacity\":1000,\"current_stock\":1000}" \
        >/dev/null
done
for _ in 1 2 3; do order 2 >/dev/null; done
echo "stock check: open=3 median=$(median) ms"
for s in 2 3 4; do
    for _ in $(seq 1000); do order "$s" >/dev/null; done
done
echo "stock check: open=3003 median=$(median) ms"
