#!/usr/bin/env bash
# Regenerate demo/commands.wav: spoken commands from vcd's default sentences, with pauses.
# Needs espeak-ng and sox (scripts/install.sh installs both).  16 kHz, mono, 16-bit.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() {  # say VOICE WORDS_PER_MINUTE TEXT: one command, then a 2 s pause
    local n; n=$(printf '%02d' "$(ls "$work" | wc -l)")
    espeak-ng -v "$1" -s "$2" -w "$work/raw.wav" "$3"
    sox "$work/raw.wav" -r 16000 -c 1 -b 16 "$work/$n.wav" pad 0 2.0
    rm "$work/raw.wav"
}

sox -n -r 16000 -c 1 -b 16 "$work/00-lead.wav" trim 0 1.0
say en-us 150 "turn on the kitchen light"
say en-us 140 "set the living room to twenty one degrees"
say en-us+m3 150 "open the garage door"
say en-us 150 "what a lovely day it is outside"
say en-us 150 "turn off the kitchen light"
sox "$work"/*.wav commands.wav
soxi commands.wav
