"""Problems found in a flow, located at file:line:col, and the base of the typed errors the engine raises."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong (error) or suspicious (warning) in a flow file, where the author wrote it."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    severity: str  # "error" | "warning"
    code: str  # dotted and stable, e.g. "action.unknown"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}[{self.code}] {self.message}"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""
