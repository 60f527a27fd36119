"""Parsers of the search-side commands: search, report, verify."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    pass
