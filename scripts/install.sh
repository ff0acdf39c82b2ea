#!/usr/bin/env bash
# Install what vcd needs on Debian 12 / Raspberry Pi OS (bookworm): system packages and ./.venv.
#
# Idempotent: packages already installed are not touched (apt is skipped when all are
# there), the virtual environment is reused, and pip runs again only when pyproject.toml
# changed since the last install.  Run as root or as a user with sudo.
#
#   scripts/install.sh              # system packages + .venv with vcd, its test tools and training (torch)
#   VCD_EXTRAS=run scripts/install.sh   # the runtime only: `vcd run`, `transcribe`, `eval` (no torch, no tests)
#   PYTHON=python3.12 scripts/install.sh
#   VCD_SKIP_APT=1 scripts/install.sh   # never call apt-get (packages installed another way)
#
# VCD_EXTRAS picks the pip extras: "test,train" (default: what the tests need), "train", "test", or
# "run" for none.  The runtime needs no torch: the model runs in ONNX Runtime or numpy.  "denoise" (e.g.
# VCD_EXTRAS=denoise, or test,denoise) adds RNNoise for recognizer.denoised_view / front_end without
# pyrnnoise's own file tools (PyAV, matplotlib: ~250 MB that vcd never imports).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV="$REPO/.venv"
PYTHON=${PYTHON:-python3}
EXTRAS=${VCD_EXTRAS:-test,train}

# mosquitto + clients: the MQTT plugin's tests, the demo and the latency benchmark;
# espeak-ng + sox: speech synthesised by the tests and the demo; libportaudio2: the
# microphone (sounddevice); libsndfile1: soundfile; openssl: certificates for the TLS test;
# python3-venv: `python3 -m venv`.
APT_PACKAGES=(mosquitto mosquitto-clients espeak-ng libportaudio2 libsndfile1 sox openssl python3 python3-venv python3-pip)

log() { printf 'install: %s\n' "$*" >&2; }

missing_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_system_packages() {
    if [[ -n "${VCD_SKIP_APT:-}" ]]; then
        log "VCD_SKIP_APT is set: not checking system packages"
        return
    fi
    if ! command -v dpkg-query >/dev/null; then
        log "not a Debian-based system: install ${APT_PACKAGES[*]} (or their equivalents) yourself"
        return
    fi
    local missing
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "system packages present"
        return
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { log "need root (or sudo) to install: ${missing[*]}"; exit 1; }
        sudo=(sudo)
    fi
    log "installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

check_python() {
    command -v "$PYTHON" >/dev/null || { log "$PYTHON not found (set PYTHON=...)"; exit 1; }
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        log "vcd needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)"
        exit 1
    fi
}

install_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV with $("$PYTHON" -V 2>&1)"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.vcd-install-stamp" want check="import vcd, vcd_plugins"
    want="$(uname -m) $EXTRAS $(sha256sum pyproject.toml | cut -d' ' -f1)"
    [[ ",$EXTRAS," == *,test,* ]] && check+=", pytest"
    [[ ",$EXTRAS," == *,train,* ]] && check+=", torch"
    [[ ",$EXTRAS," == *,denoise,* ]] && check+=", vcd.denoise; vcd.denoise.RNNoise()"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$VENV/bin/python" -c "$check" 2>/dev/null; then
        log "$VENV up to date"
        return
    fi
    local pins=() spec="." extras denoise=""
    # "denoise" is not asked of pip as an extra: its pyrnnoise would bring its file tools (see above)
    extras=$(printf '%s' "$EXTRAS" | tr ',' '\n' | { grep -vx -e denoise -e run -e '' || true; } | paste -sd, -)
    [[ ",$EXTRAS," == *,denoise,* ]] && denoise=1
    [[ -n "$extras" ]] && spec=".[$extras]"
    # x86_64 with the train extra: the torch releases vcd is tested with (pip finds them on this
    # project's machines' disk); aarch64 (Raspberry Pi): whatever CPU build PyPI has within
    # pyproject.toml's ranges.  The run-only install has no torch at all.
    if [[ "$(uname -m)" == x86_64 && ",$EXTRAS," == *,train,* ]]; then
        pins=("torch==2.14.1" "torchaudio==2.11.0")
    fi
    log "installing vcd ($spec) into $VENV ${pins[*]:+(with ${pins[*]})}"
    "$VENV/bin/python" -m pip install -q -e "$spec" "${pins[@]}"
    if [[ -n "$denoise" ]]; then
        # vcd loads only pyrnnoise's ctypes binding of librnnoise (numpy and ctypes): its wheel without its
        # dependencies (x86_64 and aarch64 wheels; elsewhere pip fails here, and so does this script)
        log "installing pyrnnoise without its dependencies (its file tools; vcd uses only librnnoise)"
        "$VENV/bin/python" -m pip install -q --no-deps --only-binary=:all: "pyrnnoise>=0.4.5,<0.5"
    fi
    if [[ ",$EXTRAS," == *,test,* ]]; then
        # The MQTT tests validate Hermes payloads against rhasspy-hermes' dataclasses; it pins paho-mqtt==1.5.0
        # (vcd needs paho 2) but its message classes import only dataclasses-json (in the test extra).
        log "installing rhasspy-hermes==0.6.2 without its dependencies (it pins paho-mqtt 1.5)"
        "$VENV/bin/python" -m pip install -q --no-deps "rhasspy-hermes==0.6.2"
    fi
    printf '%s\n' "$want" >"$stamp"
}

install_system_packages
check_python
install_venv
log "done: $VENV/bin/vcd"
