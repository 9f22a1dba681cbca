"""Money and pacing: prices, cost tracking, budgets, rate limits, plans and cost reports."""
