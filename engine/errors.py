"""One error root for the product, with structured fields people can act on."""

from __future__ import annotations

from dataclasses import dataclass


class JourneyError(Exception):
    """Root of every error the product raises on purpose."""


class ConfigError(JourneyError):
    """A setting or environment variable is wrong."""


@dataclass
class Problem:
    """One problem in a rule, stage or template file, located for a person to fix it."""

    file: str
    line: int
    column: int
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        return f"{self.file}:{self.line}:{self.column}: {self.message}{hint}"


class RuleError(JourneyError):
    """The rule set has problems; nothing of it was loaded."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TemplateError(JourneyError):
    """A message template cannot be rendered."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, suggestion: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.message = message
        self.suggestion = suggestion
        where = f"{file}:{line or 1}: " if file else ""
        hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
        super().__init__(f"{where}{message}{hint}")


class IngestError(JourneyError):
    """An event is malformed."""


class DeliveryError(JourneyError):
    """A channel refused or failed a message. `permanent`: trying again cannot help (SMTP 5xx for
    the recipient, webhook 4xx); `smtp_code`: the SMTP server's answer code, when it gave one."""

    def __init__(self, message: str, *, permanent: bool = False, smtp_code: int | None = None) -> None:
        self.permanent = permanent
        self.smtp_code = smtp_code
        super().__init__(message)

    @property
    def hard_bounce(self) -> bool:
        """The mail server refused the recipient for good (5xx): no more email to that address."""
        return self.smtp_code is not None and 500 <= self.smtp_code < 600
