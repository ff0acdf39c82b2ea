"""Topic and payload templates (``{field|filter}``), slugs, and the check that a topic can be published to."""

from __future__ import annotations

import json
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Any


def slugify(value: str) -> str:
    """``"Kitchen Light"`` → ``"kitchen_light"``: ASCII lower case, runs of other characters → ``_``."""
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def as_text(value: Any) -> str:
    """A value as template text: ``true``/``false``, whole floats without ``.0``, lists and tables as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


FILTERS = {
    "slug": lambda v: slugify(as_text(v)),
    "lower": lambda v: as_text(v).lower(),
    "upper": lambda v: as_text(v).upper(),
    "json": lambda v: json.dumps(v, ensure_ascii=False),
}


class MissingField(KeyError):
    """A template names a field that the recognised command does not have."""


@dataclass(frozen=True)
class Template:
    """A topic or payload template: literal text and ``{field}`` / ``{field|filter|…}`` references.

    Fields are the command's slots plus ``intent``, ``site``, ``text`` and
    ``confidence`` (a slot of the same name wins).  ``{{`` and ``}}`` are literal
    braces.  Filters: ``slug``, ``lower``, ``upper``, ``json``.  Nothing else is
    evaluated: no attribute access, indexing or format specs.
    """

    source: str
    parts: tuple[str | tuple[str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        """Parse ``source``; raises ValueError with a short reason when it is malformed."""
        parts: list[str | tuple[str, tuple[str, ...]]] = []
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise ValueError(
                f"malformed template {source!r}: {exc} (write '{{{{' or '}}}}' for a literal brace)"
            ) from None
        for literal, name, spec, conversion in parsed:
            if literal:
                parts.append(literal)
            if name is None:
                continue
            if spec or conversion:
                raise ValueError(
                    f"template {source!r}: ':' and '!' are not allowed in {{{name}}}; use {{field|filter}}"
                )
            field_name, *filters = [piece.strip() for piece in name.split("|")]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field_name):
                raise ValueError(f"template {source!r}: {{{name}}} must name a slot, e.g. {{name}} or {{name|slug}}")
            for fname in filters:
                if fname not in FILTERS:
                    raise ValueError(
                        f"template {source!r}: unknown filter {fname!r} (known: {', '.join(sorted(FILTERS))})"
                    )
            parts.append((field_name, tuple(filters)))
        return cls(source, tuple(parts))

    @property
    def literal_text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))

    def render(self, values: dict[str, Any]) -> str:
        """Substitute ``values``; raises :class:`MissingField` naming the first unknown field."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, filters = part
            if name not in values:
                raise MissingField(name)
            value = values[name]
            if not filters:
                out.append(as_text(value))
                continue
            for fname in filters:
                value = FILTERS[fname](value)
            out.append(value)
        return "".join(out)


def topic_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be published to, or None when it can."""
    if not topic:
        return "must not be empty"
    if "+" in topic or "#" in topic:
        return f"must not contain the wildcards '+' or '#' (got {topic!r})"
    if "\0" in topic:
        return "must not contain NUL characters"
    if len(topic.encode("utf-8")) > 65535:
        return "is longer than 65535 bytes"
    return None
