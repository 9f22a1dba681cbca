"""Code steps and tools of the accounts-payable three-way match.

`ap_three_way_match.yaml` names these as ``function: "ap_tools:..."`` (code steps)
and under ``tools:`` (called by a model); orchestrate finds this module next to
the workflow file. The lookups read a small sample ledger so the example runs
offline; replace them with your ERP's purchase-order and goods-receipt APIs.
"""

from __future__ import annotations

from typing import Any

_PURCHASE_ORDERS: dict[str, dict[str, Any]] = {
    "PO-4711": {"vendor": "V-100 Nordic Steel AB", "currency": "EUR",
                "lines": {"ST-100": {"qty": 40, "unit_price": 12.5}, "ST-220": {"qty": 10, "unit_price": 80.0},
                          "BOLT-8": {"qty": 500, "unit_price": 0.12}}},
}
_RECEIPTS: dict[str, dict[str, float]] = {"PO-4711": {"ST-100": 40, "ST-220": 8, "BOLT-8": 500}}
_VENDOR_HISTORY: dict[str, dict[str, Any]] = {
    "V-100 Nordic Steel AB": {"invoices_last_year": 38, "disputes_last_year": 1, "bank_details_changed": False},
}


def fetch_po(po_number: str) -> dict[str, Any]:
    """The purchase order: vendor, currency and ordered quantity and price per SKU."""
    order = _PURCHASE_ORDERS.get(po_number)
    if order is None:
        raise LookupError(f"no purchase order {po_number}")
    return {"po_number": po_number, **order}


def fetch_receipt(po_number: str) -> dict[str, Any]:
    """The goods received against a purchase order, quantity per SKU."""
    return {"po_number": po_number, "received": dict(_RECEIPTS.get(po_number, {}))}


def match_line(line: dict[str, Any], po: dict[str, Any], receipt: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """Three-way match of one invoice line against the order and the receipt."""
    sku = str(line.get("sku", ""))
    qty = float(line.get("qty", 0))
    price = float(line.get("unit_price", 0))
    ordered = po["lines"].get(sku)
    if ordered is None:
        return {"sku": sku, "status": "not_on_po", "variance": round(qty * price, 2)}
    received = float(receipt["received"].get(sku, 0))
    price_gap = (price - ordered["unit_price"]) / ordered["unit_price"] if ordered["unit_price"] else 0.0
    if qty > received:
        status = "qty_variance"
    elif abs(price_gap) > tolerance:
        status = "price_variance"
    else:
        status = "matched"
    variance = round(qty * price - min(qty, received) * ordered["unit_price"], 2)
    return {"sku": sku, "status": status, "variance": variance if status != "matched" else 0.0}


def summarise(checks: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Matched and exception counts, and the total variance, over every checked line."""
    done = [c for c in checks if c]
    exceptions = [c for c in done if c["status"] != "matched"]
    return {"lines": len(checks), "matched": len(done) - len(exceptions), "exceptions": len(exceptions),
            "unchecked": len(checks) - len(done),
            "total_variance": round(sum(float(c["variance"]) for c in exceptions), 2)}


def vendor_history(vendor: str) -> dict[str, Any]:
    """Invoices, disputes and bank-detail changes of a vendor over the last year (a tool)."""
    return _VENDOR_HISTORY.get(vendor, {"invoices_last_year": 0, "disputes_last_year": 0,
                                        "bank_details_changed": None})
