#!/usr/bin/env bash
# Demo: install, start a local mosquitto, print every MQTT message, and run vcd on the
# microphone (when `vcd devices` finds one) or on the bundled recording demo/commands.wav.
#
#   scripts/demo.sh           # microphone if there is one, else the recording
#   scripts/demo.sh --file    # always the recording
# Stop the microphone demo with Ctrl-C; the recording demo ends by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

PORT=1883
VCD=.venv/bin/vcd
CONFIG=demo/config.toml
work=$(mktemp -d)
started_broker=""
sub_pid=""

cleanup() {
    if [[ -n "$sub_pid" ]]; then
        kill "$sub_pid" 2>/dev/null || true
        wait "$sub_pid" 2>/dev/null || true
    fi
    if [[ -n "$started_broker" && -f "$work/mosquitto.pid" ]]; then
        kill "$(cat "$work/mosquitto.pid")" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

broker_up() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

if broker_up; then
    echo "demo: using the MQTT broker already listening on 127.0.0.1:$PORT"
else
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]] && systemctl start mosquitto 2>/dev/null; then
        echo "demo: started the mosquitto service"
    else
        mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\npid_file %s\n' \
            "$PORT" "$work/mosquitto.pid" >"$work/mosquitto.conf"
        [[ $(id -u) -eq 0 ]] && echo "user root" >>"$work/mosquitto.conf"
        "$mosquitto_bin" -c "$work/mosquitto.conf" -d
        started_broker=1
        echo "demo: started mosquitto on 127.0.0.1:$PORT (stopped when the demo ends)"
    fi
    for _ in $(seq 50); do broker_up && break; sleep 0.1; done
    broker_up || { echo "demo: no MQTT broker on 127.0.0.1:$PORT" >&2; exit 1; }
fi

mosquitto_sub -h 127.0.0.1 -p "$PORT" -v -t 'vcd/#' -t 'home/#' -t 'hermes/#' -t 'homeassistant/#' &
sub_pid=$!
sleep 0.3

if [[ "${1:-}" != "--file" ]] && "$VCD" devices 2>/dev/null | grep -q '^[* ] '; then
    echo "demo: listening on the microphone; say e.g. \"turn on the kitchen light\" (Ctrl-C stops)"
    "$VCD" run --config "$CONFIG" || true
else
    echo "demo: no microphone; playing demo/commands.wav at real-time speed"
    "$VCD" run --config "$CONFIG" --input demo/commands.wav --realtime
fi
sleep 0.5  # let mosquitto_sub print the last messages
