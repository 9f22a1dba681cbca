"""Code steps of the month-end close: arithmetic and the ledger posting, no model involved.

`finance_month_end_close.yaml` names these as ``function: "finance_tools:..."``;
orchestrate finds this module next to the workflow file. Replace the body of
`post_journal` with your ERP's API call (it only builds the journal here).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def adjustment_summary(bank: dict[str, Any], accruals: dict[str, Any], materiality: float) -> dict[str, Any]:
    """The adjusting entries the reviews call for, their total, and which are material."""
    entries = [{"account": "accruals", "amount": round(float(accruals.get("total_adjustment", 0.0)), 2),
                "reason": "; ".join(accruals.get("missing", []))[:200] or "accrual review"}]
    for item in bank.get("unmatched_items", []):
        entries.append({"account": "bank", "amount": 0.0, "reason": str(item)[:200]})
    total = round(sum(entry["amount"] for entry in entries), 2)
    return {"entries": entries, "total": total, "material": abs(total) >= float(materiality),
            "escalations": len(bank.get("escalations", []))}


def post_journal(entity: str, period: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Post the adjusting entries as one journal; returns its id (deterministic for the same entries)."""
    body = json.dumps({"entity": entity, "period": period, "entries": entries}, sort_keys=True)
    journal_id = "JE-" + period.replace("-", "") + "-" + hashlib.sha256(body.encode()).hexdigest()[:8].upper()
    return {"journal_id": journal_id, "lines": len(entries),
            "total": round(sum(float(e.get("amount", 0.0)) for e in entries), 2)}
