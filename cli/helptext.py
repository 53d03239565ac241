"""How the console scripts' ``--help`` reads: each option's default shown once, where it has one."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless it has no default (None, off) or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if silent or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def description(doc: str | None) -> str:
    """A module docstring's first paragraph as ``--help`` shows it: plain text, without reST markup."""
    return " ".join((doc or "").split("\n\n")[0].split()).replace("``", "")
