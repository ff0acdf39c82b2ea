"""The ``[plugins.feedback]`` table, validated into :class:`FeedbackSettings`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vcd

SOUNDS_DIR = Path(__file__).resolve().parent / "sounds"
KINDS = ("wake", "recognized", "not_understood")  # the kinds of vcd_feedback, each with a sound
DEFAULT_VOICE = "en-us"


@dataclass(frozen=True)
class FeedbackSettings:
    """What the plugin plays and says, and where."""

    sounds: bool = True  # play the short sounds
    volume: float = 0.5  # 0..1, a factor on the sounds and the speech
    device: str | int | None = None  # output device (sounddevice name or index); None: the default output
    tts: bool = True  # speak answers (the sentences' responses, plugins' controls.say, Hermes ttsSay)
    voice: str = DEFAULT_VOICE  # espeak-ng voice
    piper_model: Path | None = None  # a Piper voice (.onnx); when set, Piper speaks instead of espeak-ng
    sites: tuple[str, ...] = ()  # sites whose feedback plays here; () = this daemon's site; "*" = every site
    sound_files: tuple[tuple[str, Path], ...] = ()  # kind → WAV/OGG/FLAC file, the bundled one by default

    def sound_file(self, kind: str) -> Path:
        return dict(self.sound_files).get(kind, SOUNDS_DIR / f"{kind}.wav")

    def plays_for(self, site: str, own_site: str) -> bool:
        return "*" in self.sites or site in (self.sites or (own_site,))


def parse_settings(config: Any, config_path: Path | None, name: str) -> FeedbackSettings:
    """The validated table (defaults when absent); :class:`vcd.ConfigError` naming the file and key otherwise."""
    table = config.plugin_table(name)
    base = Path(config_path).parent if config_path else Path.cwd()
    prefix = f"plugins.{name}."
    known = ["sounds", "volume", "device", "tts", "voice", "piper_model", "sites"] + [f"{k}_sound" for k in KINDS]
    for key in table:
        if key not in known:
            raise config.key_error(prefix + key, f"unknown key{vcd.did_you_mean(key, known)}")

    def flag(key: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise config.key_error(prefix + key, f"must be true or false (got {value!r})")
        return value

    def text(key: str) -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise config.key_error(prefix + key, f"must be a non-empty string (got {value!r})")
        return value

    volume = table.get("volume", FeedbackSettings.volume)
    if isinstance(volume, bool) or not isinstance(volume, int | float) or not 0.0 <= volume <= 1.0:
        raise config.key_error(prefix + "volume", f"must be a number from 0 to 1 (got {volume!r})")
    device = table.get("device")
    if device is not None and (isinstance(device, bool) or not isinstance(device, str | int)
                               or (isinstance(device, int) and device < 0) or device == ""):
        raise config.key_error(prefix + "device", f"must be a device name or index (got {device!r})")
    sites = table.get("sites", [])
    if not isinstance(sites, list) or not all(isinstance(s, str) and s for s in sites):
        raise config.key_error(prefix + "sites", f"must be a list of site names (got {sites!r})")
    model = text("piper_model")
    files = []
    for kind in KINDS:
        path = text(f"{kind}_sound")
        if path is not None:
            files.append((kind, (base / path).expanduser()))
    return FeedbackSettings(
        sounds=flag("sounds", True), volume=float(volume), device=device, tts=flag("tts", True),
        voice=text("voice") or DEFAULT_VOICE, piper_model=(base / model).expanduser() if model else None,
        sites=tuple(sites), sound_files=tuple(files),
    )
