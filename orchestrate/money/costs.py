"""Prices, spend and hard budgets.

Prices are USD per 1K tokens, from the dated table in
``orchestrate/data/prices.json``, extended or overridden by
`CostConfig.model_costs`, a `CostConfig.price_file` and a workflow's
``prices``. A dated snapshot name (``gpt-4o-2024-08-06``,
``claude-sonnet-4-5-20250929``, ``...-latest``) is priced as its family.

Budgets are ceilings, never crossed. Before a call, the engine reserves its
worst case (`max_cost`); the reservation is refused (`BudgetExceededError`)
when spent + reserved + worst case would pass the workflow's `cost_budget` or
the agent's `cost_limit`. After the call the real cost is settled and the rest
freed. Reserving is synchronous, so no other task can slip in between the
check and the commit, whatever the concurrency.

The worst case of a call: every UTF-8 byte of its messages and tool specs
counted as a token (byte-level BPE tokenizers never produce more tokens than
bytes), plus a fixed overhead per message, priced at the dearest input rate
(Anthropic's cache writes cost 1.25x input), plus ``max_tokens`` of output
(reasoning tokens are part of the output budget). A call that may write
Anthropic's 1-hour cache (``cache_ttl="1h"``) counts its 2x write price among
the input rates, so a first wave of calls that all write the cache stays within
the budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrate.errors import BudgetExceededError, UserInputError
from orchestrate.finite import is_finite_number, loads_strict
from orchestrate.fsutil import TooLargeError, read_bytes_capped
from orchestrate.llm.prices import closest_model, find_price, price_table
from orchestrate.money.amounts import round10

if TYPE_CHECKING:
    from orchestrate.money.budget_scope import ScopeLedger

__all__ = [
    "CallRecord",
    "CostConfig",
    "CostTracker",
    "Reservation",
    "agent_key",
    "check_prices",
    "closest_model",
    "find_price",
    "price_table",
]

MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 16
SCHEMA_OVERHEAD_TOKENS = 256  # the wrapper around a response schema (names, instructions)
_EPSILON = 1e-12
_PRICE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
MAX_PRICE_FILE_BYTES = 5 * 1024 * 1024
_new = object.__new__


def agent_key(workflow_id: str, agent_name: str) -> str:
    """The id under which the tracker keeps an agent's spend and limit."""
    return f"{workflow_id}:{agent_name}"


@dataclass
class CostConfig:
    """Cost tracking configuration.

    Attributes:
        model_costs: Prices per 1K tokens by model ({"input", "output", and
            optionally "cached_input", "cache_write"}), over the built-in table.
        default_input_cost: Input price per 1K tokens of a model with no known price.
        default_output_cost: Output price per 1K tokens of a model with no known price.
        price_file: A JSON file of more prices, shaped like the built-in table
            (``{"models": {...}}``) or a plain ``{model: prices}`` mapping.
        price_unknown_models: Let an engine run agents whose model has no known price,
            at the default prices. Off: such a workflow is refused when it is
            registered (a dearer model would pass the budget at a guessed price).
    """

    model_costs: dict[str, dict[str, float]] = field(default_factory=dict)
    default_input_cost: float = 0.01
    default_output_cost: float = 0.03
    price_file: str | None = None
    price_unknown_models: bool = False


# Where a call was served, and for a fallback the model asked for and why it did not serve.
_PROVENANCE = ("region", "requested_model", "fallback_reason")


@dataclass(slots=True)
class Reservation:
    """Money set aside for one call until it is settled or released."""

    workflow_id: str
    agent_key: str
    amount: float
    open: bool = True
    parent: str | None = None
    lease: str | None = None  # its lease in a shared budget scope, if any
    accounts: tuple[_Account, ...] = ()  # what it was reserved in (found again by id otherwise)


@dataclass(slots=True)
class CallRecord:
    """One priced call (or one carried-over result) as cost.json lists it."""

    timestamp: float  # epoch seconds; written as ISO 8601 UTC by to_dict
    workflow_id: str
    agent_id: str
    agent: str
    model: str
    provider: str
    module: str
    input_tokens: int
    cached_input_tokens: int
    cache_creation_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost: float
    cached: bool = False
    reused: bool = False
    batch: bool = False
    batch_id: str | None = None
    usage_anomaly: str | None = None
    metadata: dict[str, Any] | None = None
    cache_creation_1h_input_tokens: int = 0
    cache_savings: float = 0.0  # what the same call would have cost more with no prompt cache

    def to_dict(self) -> dict[str, Any]:
        """cost.json's entry: every field but `metadata`, the time in ISO 8601 UTC (milliseconds)."""
        return {
            "timestamp": datetime.fromtimestamp(self.timestamp, UTC).isoformat(timespec="milliseconds"),
            "workflow_id": self.workflow_id,
            "agent_id": self.agent_id,
            "agent": self.agent,
            "model": self.model,
            "provider": self.provider,
            "module": self.module,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
            "cache_savings": self.cache_savings,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": self.cost,
            "cached": self.cached,
            "reused": self.reused,
            "batch": self.batch,
            "batch_id": self.batch_id,
            "usage_anomaly": self.usage_anomaly,
            **({k: self.metadata[k] for k in _PROVENANCE if k in self.metadata} if self.metadata else {}),
        }


@dataclass(slots=True)
class _Account:
    limit: float | None = None
    spent: float = 0.0
    reserved: float = 0.0
    parent: str | None = None  # a batch's account, which every row's spend also counts against


def _load_price_file(path: str) -> dict[str, dict[str, float]]:
    try:
        data = loads_strict(read_bytes_capped(path, MAX_PRICE_FILE_BYTES).decode("utf-8"))
    except TooLargeError:
        raise UserInputError(f"{path}: price file is over {MAX_PRICE_FILE_BYTES:,} bytes") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read price file: {exc.strerror or exc}") from exc
    except ValueError as exc:  # also UnicodeDecodeError, NaN and Infinity
        raise UserInputError(f"{path}: price file is not valid JSON: {exc}") from exc
    models = data.get("models", data) if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(
        isinstance(p, dict) and "input" in p and "output" in p for p in models.values()
    ):
        raise UserInputError(f"{path}: price file must map model names to {{input, output}} per 1K tokens")
    check_prices(models, where=path)
    return models


def check_prices(prices: Mapping[str, Any], *, where: str = "prices") -> None:
    """Refuse a price that is not a finite number at least 0 (a NaN price switches budgets off).

    Raises:
        UserInputError: naming the model and the field.
    """
    for model, entry in prices.items():
        if not isinstance(entry, Mapping):
            raise UserInputError(f"{where}: prices of {model!r} must be a mapping of input, output, ...")
        for name, value in entry.items():
            if name in _PRICE_FIELDS and not (is_finite_number(value) and value >= 0):
                raise UserInputError(f"{where}: {model}.{name} must be a finite number at least 0, got {value!r}")


class CostTracker:
    """Prices calls, records spend by agent, model, module and provider, and guards budgets.

    Args:
        config: Extra prices and the defaults for unknown models.
    """

    def __init__(self, config: CostConfig | None = None) -> None:
        self.config = config or CostConfig()
        self.prices: dict[str, dict[str, float]] = {}
        if self.config.price_file:
            self.prices.update(_load_price_file(self.config.price_file))
        check_prices(self.config.model_costs, where="CostConfig.model_costs")
        check_prices(
            {"defaults": {"input": self.config.default_input_cost, "output": self.config.default_output_cost}},
            where="CostConfig",
        )
        self.prices.update({k: dict(v) for k, v in self.config.model_costs.items()})
        self._price_cache: dict[str, dict[str, float]] = {}
        # By model (no workflow prices): what `max_cost` prices a call's input and output at
        # (`_bound_rates`), found once rather than from the prices before every call.
        self._bound_rates: dict[str, tuple[float, float, float]] = {}
        self._workflows: dict[str, _Account] = {}
        self._agents: dict[str, _Account] = {}
        self._records: dict[str, list[CallRecord]] = {}
        self.scopes: ScopeLedger | None = None  # budgets shared by name (`budget_scope`)
        self.total_cost = 0.0
        self.total_tokens = 0
        self.total_calls = 0

    # -- prices ---------------------------------------------------------------------------------

    def add_prices(self, prices: Mapping[str, Mapping[str, float]]) -> None:
        """Add or override prices (a workflow's ``prices``)."""
        check_prices(prices)
        self.prices.update({k: dict(v) for k, v in prices.items()})
        self._price_cache.clear()
        self._bound_rates.clear()

    def has_price(self, model: str, overrides: Mapping[str, Mapping[str, float]] | None = None) -> bool:
        """Whether `model` has a price of its own (not the defaults for unknown models)."""
        return (overrides is not None and find_price(model, overrides) is not None) or find_price(
            model, self.prices
        ) is not None

    def price_of(self, model: str, overrides: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, float]:
        """Input, cached input, cache write (5 minutes, 1 hour) and output prices of `model` per 1K tokens."""
        if not overrides:
            cached = self._price_cache.get(model)
            if cached is None:
                cached = self._price_cache[model] = self._lookup_price(model, None)
            return cached
        return self._lookup_price(model, overrides)

    def _lookup_price(self, model: str, overrides: Mapping[str, Mapping[str, float]] | None) -> dict[str, float]:
        found = find_price(model, overrides) if overrides else None
        found = found or find_price(model, self.prices)
        if found is None:
            found = {"input": self.config.default_input_cost, "output": self.config.default_output_cost}
        inp = float(found["input"])
        write = float(found.get("cache_write", inp))
        return {
            "input": inp,
            "output": float(found["output"]),
            "cached_input": float(found.get("cached_input", inp)),
            "cache_write": write,
            "cache_write_1h": float(found.get("cache_write_1h", write)),
        }

    def calculate_cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        cached_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
        cache_creation_1h_input_tokens: int = 0,
    ) -> float:
        """Cost in USD of a call; `input_tokens` counts every prompt token, cached ones included,
        and `cache_creation_1h_input_tokens` is the part of the cache writes kept for an hour.

        Example: ``calculate_cost("gpt-4", 1000, 500)`` is 0.03 + 0.03 = 0.06.
        """
        p = self._price_cache.get(model) or self.price_of(model)
        if (
            not (cached_input_tokens or cache_creation_input_tokens or cache_creation_1h_input_tokens)
            and input_tokens >= 0
        ):
            # No prompt cache read or written (most calls): the sum below with its zero terms left
            # out, the same float, without six min/max calls.
            return round10((input_tokens * p["input"] + output_tokens * p["output"]) / 1000.0)
        cached = min(max(cached_input_tokens, 0), input_tokens)
        written = min(max(cache_creation_input_tokens, 0), input_tokens - cached)
        hour = min(max(cache_creation_1h_input_tokens, 0), written)
        plain = input_tokens - cached - written
        cost = (
            plain * p["input"]
            + cached * p["cached_input"]
            + (written - hour) * p["cache_write"]
            + hour * p["cache_write_1h"]
            + output_tokens * p["output"]
        ) / 1000.0
        return round10(cost)

    def cache_savings(
        self,
        model: str,
        input_tokens: int,
        *,
        cached_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
        cache_creation_1h_input_tokens: int = 0,
    ) -> float:
        """What a call's input would have cost more had nothing been read from or written to
        the prompt cache (negative when its writes cost more than its reads saved)."""
        if not cached_input_tokens and not cache_creation_input_tokens:
            return 0.0
        uncached = self.calculate_cost(model, input_tokens, 0)
        actual = self.calculate_cost(
            model,
            input_tokens,
            0,
            cached_input_tokens=cached_input_tokens,
            cache_creation_input_tokens=cache_creation_input_tokens,
            cache_creation_1h_input_tokens=cache_creation_1h_input_tokens,
        )
        return round(uncached - actual, 10)

    @staticmethod
    def batch_rate(provider: str) -> float:
        """The share of the list price a provider's batch API charges (the price table's ``batch``)."""
        rate = price_table().get("batch", {}).get(provider)
        return float(rate) if isinstance(rate, (int, float)) else 1.0

    def max_cost(
        self,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        max_tokens: int,
        *,
        overrides: Mapping[str, Mapping[str, float]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        response_schema: Mapping[str, Any] | None = None,
        cache_ttl: str | None = None,
    ) -> float:
        """The most a call can cost: see the module docstring for the bound.

        A `response_schema` is sent along (OpenAI's response_format, or a
        system-prompt instruction for Anthropic), so its bytes count too. With
        `cache_ttl` ``"1h"`` the call may write the 1-hour cache, at its price.
        """
        input_bound = REQUEST_OVERHEAD_TOKENS
        for message in messages:
            content = message.get("content")
            if content.__class__ is str and content.isascii():  # (most prompts) its length is its bytes
                input_bound += MESSAGE_OVERHEAD_TOKENS + len(content)
            else:
                input_bound += MESSAGE_OVERHEAD_TOKENS + len(str(content or "").encode("utf-8"))
            calls = message.get("tool_calls")
            if calls:
                input_bound += len(
                    json.dumps([getattr(c, "to_dict", lambda c=c: c)() for c in calls], default=str).encode("utf-8")
                )
        if tools:
            input_bound += len(json.dumps(tools, default=str).encode("utf-8"))
        if response_schema is not None:
            input_bound += SCHEMA_OVERHEAD_TOKENS + len(json.dumps(response_schema).encode("utf-8"))
        rates = None if overrides else self._bound_rates.get(model)
        if rates is None:
            rates = self._rates_of(model, overrides)
        dearest_input, dearest_input_1h, output = rates
        if cache_ttl == "1h":
            dearest_input = dearest_input_1h
        output_bound = max_tokens if max_tokens > 0 else 0  # max(0, max_tokens)
        return round10((input_bound * dearest_input + output_bound * output) / 1000.0)

    def _rates_of(self, model: str, overrides: Mapping[str, Mapping[str, float]] | None) -> tuple[float, float, float]:
        """The rates `max_cost` bounds a call by: the dearest input rate, the dearest counting a
        1-hour cache write, and the output rate (kept by model when there are no `overrides`)."""
        p = self.price_of(model, overrides)
        # max(input, cache_write, cached_input), and cache_write_1h for "1h", as max() picks (the
        # first of equals), without its call: max() of three floats costs ~1,900 instructions.
        dearest_input = p["input"]
        rate = p["cache_write"]
        if rate > dearest_input:
            dearest_input = rate
        rate = p["cached_input"]
        if rate > dearest_input:
            dearest_input = rate
        dearest_input_1h = dearest_input
        rate = p["cache_write_1h"]
        if rate > dearest_input_1h:
            dearest_input_1h = rate
        rates = (dearest_input, dearest_input_1h, p["output"])
        if not overrides:
            self._bound_rates[model] = rates
        return rates

    # -- budgets --------------------------------------------------------------------------------

    def set_workflow_budget(self, workflow_id: str, budget: float | None, *, parent: str | None = None) -> None:
        """The ceiling of a workflow's spend (None: no ceiling).

        With `parent` (the id of another account, e.g. a batch's), every
        reservation and spend of this workflow also counts against that
        account's ceiling, checked in the same synchronous step.
        """
        account = self._workflows.setdefault(workflow_id, _Account())
        account.limit = budget
        if parent is not None:
            self._workflows.setdefault(parent, _Account())
            account.parent = parent

    def forget(self, workflow_id: str, agent_keys: Iterable[str] = ()) -> list[CallRecord]:
        """Drop a finished workflow's accounts and return its call records.

        A batch calls this as each row ends so that memory stays flat however
        many rows it runs; the row's spend stays counted in its parent account.
        """
        self._workflows.pop(workflow_id, None)
        keys = list(agent_keys)
        for key in keys:
            self._agents.pop(key, None)
        if self.scopes is not None:
            self.scopes.forget(workflow_id, keys)
        return self._records.pop(workflow_id, [])

    def adopt(self, workflow_id: str, records: Iterable[CallRecord]) -> None:
        """List another run's call records (a ``--repeat`` try's, already booked and forgotten)
        with this workflow's, so its cost.json shows every call of every try."""
        self._records.setdefault(workflow_id, []).extend(records)

    def set_agent_budget(self, agent_id: str, limit: float | None) -> None:
        """The ceiling of an agent's spend; `agent_id` is ``"<workflow id>:<agent name>"``."""
        account = self._agents.get(agent_id)
        if account is None:
            # Made without the dataclass's __init__ (a class's call with one is dear in 3.11): the
            # engine opens an account for every agent it registers.
            account = self._agents[agent_id] = _new(_Account)
            account.spent = account.reserved = 0.0
            account.parent = None
        account.limit = limit

    def reserve(self, workflow_id: str, agent_key: str, amount: float, agent_limit: float | None = None) -> Reservation:
        """Set `amount` aside for a call, or refuse it.

        `agent_limit` is the agent's ceiling when it has no account yet (one set
        with `set_agent_budget` is kept).

        Raises:
            BudgetExceededError: When the reservation would pass the workflow's
                budget or the agent's limit; nothing is reserved then.
        """
        amount = amount if amount > 0.0 else 0.0  # max(0.0, amount) (NaN too), without max()'s call
        flow = self._workflows.get(workflow_id) or self._workflows.setdefault(workflow_id, _Account())
        own = self._agents.get(agent_key)
        if own is None:
            own = self._agents[agent_key] = _Account(agent_limit)
        parent = self._workflows.get(flow.parent) if flow.parent is not None else None
        accounts = (flow, own) if parent is None else (parent, flow, own)
        for account in accounts:  # the common case first: every account has room
            limit = account.limit
            if limit is not None and (
                account.spent > limit + _EPSILON or account.spent + account.reserved + amount > limit + _EPSILON
            ):
                self._refuse(accounts, amount)
        for account in accounts:
            account.reserved += amount
        # Made without the dataclass's __init__ (a class's call with one is dear in 3.11): a call each.
        reservation = _new(Reservation)
        reservation.workflow_id = workflow_id
        reservation.agent_key = agent_key
        reservation.amount = amount
        reservation.open = True
        reservation.parent = flow.parent
        reservation.lease = None
        reservation.accounts = accounts
        return reservation

    @staticmethod
    def _refuse(accounts: tuple[_Account, ...], amount: float) -> None:
        """Raise the refusal of the first account (dataset run, workflow, agent) without room."""
        scopes = ("workflow", "agent") if len(accounts) == 2 else ("batch", "workflow", "agent")
        for scope, account in zip(scopes, accounts):
            label = "dataset" if scope == "batch" else scope  # the scope's name in events stays "batch"
            committed = account.spent + account.reserved
            if account.limit is not None and account.spent > account.limit + _EPSILON:
                raise BudgetExceededError(
                    f"{label} budget of ${account.limit:.4f} already passed: ${account.spent:.4f} booked "
                    "(a provider reported more usage than was reserved); no further calls",
                    scope=scope,
                    limit=account.limit,
                    requested=amount,
                    committed=committed,
                )
            if account.limit is not None and committed + amount > account.limit + _EPSILON:
                raise BudgetExceededError(
                    f"{label} budget of ${account.limit:.4f} would be passed: ${committed:.4f} spent or "
                    f"reserved, and this call may cost up to ${amount:.4f}",
                    scope=scope,
                    limit=account.limit,
                    requested=amount,
                    committed=committed,
                )

    async def reserve_shared(self, reservation: Reservation, *, simulated: bool = False) -> None:
        """Also reserve `reservation` in its workflow's shared budget scope, if it has one
        (a `simulated` call only reads the scope: see `ScopeLedger.reserve`).

        Raises:
            BudgetExceededError: When the scope would be passed or was never set.
            StateUnavailableError: When the shared state cannot be reached.
        """
        if self.scopes is not None:
            await self.scopes.reserve(reservation, simulated=simulated)

    def settle(self, reservation: Reservation, actual_cost: float) -> None:
        """Free a reservation once its call is priced; `record_cost` then books the real cost."""
        if reservation.lease is not None and self.scopes is not None:
            self.scopes.settle_later(reservation, actual_cost)
        if not reservation.open:
            return
        reservation.open = False
        accounts = reservation.accounts or (
            self._workflows.get(reservation.workflow_id),
            self._agents.get(reservation.agent_key),
            self._workflows.get(reservation.parent) if reservation.parent else None,
        )
        amount = reservation.amount
        for account in accounts:
            if account is not None:
                left = account.reserved - amount
                account.reserved = left if left > 0.0 else 0.0

    def release(self, reservation: Reservation) -> None:
        """Free a reservation whose call failed before it cost anything (idempotent)."""
        self.settle(reservation, 0.0)

    def check_workflow_budget(self, workflow_id: str) -> bool:
        """True while the workflow's spend is within its budget."""
        account = self._workflows.get(workflow_id)
        return account is None or account.limit is None or account.spent <= account.limit + _EPSILON

    def check_agent_budget(self, agent_id: str) -> bool:
        """True while the agent's spend is within its limit."""
        account = self._agents.get(agent_id)
        return account is None or account.limit is None or account.spent <= account.limit + _EPSILON

    def spent(self, workflow_id: str) -> float:
        """What a workflow has spent so far."""
        account = self._workflows.get(workflow_id)
        return account.spent if account is not None else 0.0

    def reserved(self, workflow_id: str) -> float:
        """What a workflow has set aside for calls in flight."""
        account = self._workflows.get(workflow_id)
        return account.reserved if account is not None else 0.0

    def carry_spend(self, workflow_id: str, amount: float) -> None:
        """Count `amount` spent earlier (a resumed batch's past sessions) against a workflow's budget."""
        self._workflows.setdefault(workflow_id, _Account()).spent += max(0.0, amount)

    # -- records --------------------------------------------------------------------------------

    def record_cost(
        self,
        agent_id: str,
        agent_name: str,
        workflow_id: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        metadata: dict[str, Any] | None = None,
        *,
        cached_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
        cache_creation_1h_input_tokens: int = 0,
        reasoning_tokens: int = 0,
        provider: str = "",
        module: str = "",
        cost: float | None = None,
        usage_anomaly: str | None = None,
        cache_savings: float = 0.0,
    ) -> float:
        """Book a call's cost (computed from its tokens unless `cost` is given) and return it.

        `cache_savings` is what the call would have cost more with no prompt cache (see `cache_savings`).
        """
        if cost is None:
            cost = self.calculate_cost(
                model,
                input_tokens,
                output_tokens,
                cached_input_tokens=cached_input_tokens,
                cache_creation_input_tokens=cache_creation_input_tokens,
                cache_creation_1h_input_tokens=cache_creation_1h_input_tokens,
            )
        if metadata and ("cached" in metadata or "reused" in metadata or "batch" in metadata or "batch_id" in metadata):
            cached, reused = bool(metadata.get("cached")), bool(metadata.get("reused"))
            batch, batch_id = bool(metadata.get("batch")), metadata.get("batch_id")
        else:  # (most calls: no metadata, or only where it was served) what the gets would give
            cached = reused = batch = False
            batch_id = None
        # Every field set here rather than by the dataclass's __init__: a class's call with a
        # Python __init__ is dear in 3.11 (~2,700 instructions more for these 21 fields), and a
        # record is made for every call. (A test holds every field set, equal to CallRecord(...)'s.)
        record = _new(CallRecord)
        record.timestamp = time.time()
        record.workflow_id = workflow_id
        record.agent_id = agent_id
        record.agent = agent_name
        record.model = model
        record.provider = provider
        record.module = module
        record.input_tokens = input_tokens
        record.cached_input_tokens = cached_input_tokens
        record.cache_creation_input_tokens = cache_creation_input_tokens
        record.output_tokens = output_tokens
        record.reasoning_tokens = reasoning_tokens
        record.cost = cost
        record.cached = cached
        record.reused = reused
        record.batch = batch
        record.batch_id = batch_id
        record.usage_anomaly = usage_anomaly
        record.metadata = metadata
        record.cache_creation_1h_input_tokens = cache_creation_1h_input_tokens
        record.cache_savings = cache_savings
        records = self._records.get(workflow_id)
        if records is None:
            records = self._records[workflow_id] = []
        records.append(record)
        flow = self._workflows.get(workflow_id) or self._workflows.setdefault(workflow_id, _Account())
        flow.spent += cost
        if flow.parent is not None and not record.reused:
            # Carried-over results were paid for, and counted, in the batch's earlier session.
            self._workflows[flow.parent].spent += cost
        own = self._agents.get(agent_id) or self._agents.setdefault(agent_id, _Account())
        own.spent += cost
        self.total_cost += cost
        self.total_tokens += input_tokens + output_tokens
        self.total_calls += 0 if record.reused else 1
        return cost

    def records(self, workflow_id: str | None = None) -> list[CallRecord]:
        """Every booked call, of one workflow or of all."""
        if workflow_id is not None:
            return list(self._records.get(workflow_id, ()))
        return [r for rows in self._records.values() for r in rows]

    def get_statistics(self) -> dict[str, Any]:
        """Total cost, tokens and calls; breakdowns by model, agent, workflow, module and provider."""
        from orchestrate.money.cost_report import breakdown

        records = self.records()
        return {
            "total_cost": round(self.total_cost, 10),
            "total_tokens": self.total_tokens,
            "total_calls": self.total_calls,
            "by_model": breakdown(records, "model"),
            "by_agent": breakdown(records, "agent_id"),
            "by_workflow": breakdown(records, "workflow_id"),
            "by_module": breakdown(records, "module"),
            "by_provider": breakdown(records, "provider"),
            "budgets": {
                wid: {"budget": a.limit, "spent": round(a.spent, 10), "reserved": round(a.reserved, 10)}
                for wid, a in self._workflows.items()
            },
        }

    def cost_report(self, workflow_id: str, result_doc: Mapping[str, Any]) -> dict[str, Any]:
        """The cost.json document of a workflow (see ``schemas/cost.schema.json``)."""
        from orchestrate.money.cost_report import build_cost_document

        return build_cost_document(self, workflow_id, result_doc)
