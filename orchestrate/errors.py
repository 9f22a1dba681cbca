"""Every error orchestrate raises on purpose, rooted at one class.

The CLI turns these into exit codes; nothing else does. The tree::

    OrchestrateError                     exit 1
    ├── UserInputError                   exit 2  bad YAML, flags, inputs, config
    │   ├── WorkflowValidationError      a list of Problem(file, line, column, message)
    │   └── MissingAPIKeyError           names the variable to set, never a key
    ├── BudgetExceededError              a reservation would pass a budget
    ├── OutputValidationError            the model's answer is not the JSON promised
    ├── ToolError                        a tool could not be imported or called
    ├── StateUnavailableError            shared state (Redis) unreachable or lost: fail closed
    ├── JournalError                     a journal of the run cannot be written: no new call
    └── LLMError                         anything a provider call ends with
        ├── RetriableLLMError            worth another try
        │   ├── RateLimitError           429
        │   ├── ProviderUnavailableError 408, 409, 5xx, Anthropic's 529
        │   ├── LLMTimeoutError          connect/read/write/pool time-outs
        │   ├── LLMConnectionError       refused or reset connections
        │   ├── MalformedResponseError   a body that is not the JSON promised
        │   └── BatchExpiredError        a batch expired or was cancelled before answering
        └── NonRetriableLLMError         retrying cannot help
            ├── AuthenticationError      401, 403
            ├── BadRequestError          400, 422
            ├── ModelNotFoundError       404
            └── BatchFailedError         a provider refused a whole batch (its reason said)

This module is a leaf: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ExitCode",
    "AuthenticationError",
    "BadRequestError",
    "BatchExpiredError",
    "BatchFailedError",
    "BudgetExceededError",
    "JournalError",
    "LLMConnectionError",
    "LLMError",
    "LLMTimeoutError",
    "MalformedResponseError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "NonRetriableLLMError",
    "OrchestrateError",
    "OutputValidationError",
    "Problem",
    "ProviderUnavailableError",
    "RateLimitError",
    "RetriableLLMError",
    "StateUnavailableError",
    "ToolError",
    "UserInputError",
    "WorkflowValidationError",
]


class ExitCode(IntEnum):
    """The process exit codes: the one table (`orchestrate.app.exits` maps outcomes onto it)."""

    COMPLETED = 0
    FAILED = 1  # or cancelled, or the shared state was lost, or a journal could not be written
    INVALID_INPUT = 2  # a file, a flag or a value (`UserInputError`)
    PARTIAL = 3
    WAITING = 4  # for an approval
    EXPECTATIONS_FAILED = 5  # the agents completed, but an expectation failed or could not be evaluated
    REGRESSED = 6  # against --baseline: a case went pass -> fail, or a pass rate fell past --tolerance
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


class OrchestrateError(Exception):
    """Root of every error orchestrate raises on purpose."""

    exit_code: int = 1


class UserInputError(OrchestrateError):
    """The user gave us something we cannot use: a file, a flag, an input."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Problem:
    """One defect in a workflow file, pointed at its line and column (1-based).

    `hint` is what to do about it ("did you mean 'dependencies'?"), shown on a
    `help:` line under the source; `length` is how many characters of the line
    the defect spans (0: let the renderer find the token at the column).
    """

    file: str
    line: int
    column: int
    message: str
    path: str = ""  # JSON path of the offending node, e.g. "agents[2].priority"
    severity: str = "error"  # or "warning": reported by validate, never fails it
    hint: str = ""
    length: int = 0

    def __str__(self) -> str:
        label = "warning: " if self.severity == "warning" else ""
        tail = f"; {self.hint}" if self.hint else ""
        return f"{self.file}:{self.line}:{self.column}: {label}{self.message}{tail}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "path": self.path,
            "severity": self.severity,
            "hint": self.hint,
        }


class WorkflowValidationError(UserInputError):
    """A workflow file failed validation; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid workflow")


class MissingAPIKeyError(UserInputError):
    """A provider needs a key and none was given; the message names the variable."""

    def __init__(self, provider: str, env_var: str) -> None:
        self.provider = provider
        self.env_var = env_var
        super().__init__(f"no API key for {provider}: set {env_var} or pass api_key=")


class BudgetExceededError(OrchestrateError):
    """Reserving a call's worst-case cost would pass a workflow or agent budget."""

    def __init__(
        self,
        message: str,
        *,
        scope: str = "workflow",
        limit: float = 0.0,
        requested: float = 0.0,
        committed: float = 0.0,
    ) -> None:
        self.scope = scope
        self.limit = limit
        self.requested = requested
        self.committed = committed
        super().__init__(message)


class OutputValidationError(OrchestrateError):
    """The model's answer did not parse as JSON or did not satisfy the agent's output_schema."""


class ToolError(OrchestrateError):
    """A tool named by an agent could not be imported or is not callable."""


class JournalError(OrchestrateError):
    """A journal of the run (events.jsonl, calls.jsonl, ...) cannot be written: no new call starts."""


class StateUnavailableError(OrchestrateError):
    """The shared state (Redis) could not be reached, or was lost mid-run.

    Orchestrate fails closed: no call starts without the shared ledger. `url`
    names the state with any password scrubbed.
    """

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class LLMError(OrchestrateError):
    """A provider call failed. `retriable` says whether another try can help.

    Attributes:
        provider: "openai", "anthropic", "simulated", ...
        status_code: HTTP status when there was one.
        retry_after: Seconds the provider asked us to wait, when it said so.
        request_id: The provider's request id, for support tickets.
        billed: The provider accepted the call (it answered 2xx) but its answer could not
            be read, so the call may well be charged: the engine books its reserved worst case.
    """

    retriable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        billed: bool = False,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.request_id = request_id
        self.billed = billed
        super().__init__(message)


class RetriableLLMError(LLMError):
    """Another try may succeed."""

    retriable = True


class RateLimitError(RetriableLLMError):
    """429: the provider wants us to slow down (see retry_after)."""


class ProviderUnavailableError(RetriableLLMError):
    """408, 409, 5xx or 529: the provider is busy, overloaded or failing."""


class LLMTimeoutError(RetriableLLMError):
    """The call timed out."""


class LLMConnectionError(RetriableLLMError):
    """The connection was refused, reset or dropped."""


class MalformedResponseError(RetriableLLMError):
    """The provider's body was not the JSON it promised (truncated, HTML, ...)."""


class NonRetriableLLMError(LLMError):
    """Retrying the same request cannot help."""


class AuthenticationError(NonRetriableLLMError):
    """401 or 403: the key is missing, wrong or not allowed."""


class BadRequestError(NonRetriableLLMError):
    """400 or 422: the request itself is wrong."""


class ModelNotFoundError(NonRetriableLLMError):
    """404: no such model or endpoint."""


class BatchExpiredError(RetriableLLMError):
    """A batched request was not answered: its batch expired or was cancelled. Worth another try."""


class BatchFailedError(NonRetriableLLMError):
    """A provider refused a whole batch (its reason in the message); resubmitting cannot help."""
