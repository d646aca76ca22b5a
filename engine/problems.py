"""Problems found in a flow, located at file:line:col, and the typed errors the engine raises."""
from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass
class FlowProblems(EngineError):
    """Raised when flows with errors are asked to load; carries every problem found."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class TurnError(EngineError):
    """A turn could not run to completion (step limit, undefined variable, …); the message is for logs."""
