"""Spoken answers: a sentence file's ``response`` template for a recognised command, rendered with its slots.

Home Assistant's sentence files name a response key per block (``response: brightness``, else
``default``) and its responses files hold the texts, Jinja templates such as
``"Turned on {{ slots.name }}"``.  Templates that need only the slots render here (Jinja2, in
its sandbox); those that need Home Assistant's state (``{{ state.state }}``, ``query``…) cannot,
and give :data:`FALLBACK` instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_LOGGER = logging.getLogger(__name__)

FALLBACK = "Done"  # said when the command's template cannot be rendered here


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=1024)
def _compile(template: str) -> Any:
    return _environment().from_string(template)


def render(template: str, slots: Mapping[str, Any]) -> str | None:
    """``template`` with ``{{ slots.NAME }}`` filled in; None when it needs more than the slots (or is broken)."""
    from jinja2 import TemplateError

    try:
        text = _compile(template).render(slots=dict(slots))
    except TemplateError as exc:
        _LOGGER.debug("response %r not rendered: %s", template, exc)
        return None
    except Exception:  # noqa: BLE001 - a template may raise anything while rendering; the answer falls back
        _LOGGER.debug("response %r not rendered", template, exc_info=True)
        return None
    return re.sub(r"\s+", " ", text).strip() or None


def answer(responses: Mapping[str, Mapping[str, str]], intent: str, key: str | None,
           slots: Mapping[str, Any]) -> str | None:
    """What to say for a recognised command: its response rendered, :data:`FALLBACK`, or None.

    None when the sentences have no response for ``intent`` at all (a sound is answer enough);
    the response ``key`` falls back to ``default``.
    """
    templates = responses.get(intent)
    if not templates:
        return None
    template = templates.get(key or "default", templates.get("default"))
    if template is None:
        return FALLBACK
    return render(template, slots) or FALLBACK
