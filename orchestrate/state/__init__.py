"""Where shared state lives: rate limits, budget scopes and the response cache.

`base.SharedState` is the one small protocol; `backends.state_from_url` picks a back-end
by URL: ``memory://`` (in-process, the default and the test double) or
``redis://`` / ``rediss://`` (every process using the same Redis and namespace
shares limits, budgets and cache; needs ``pip install 'orchestrate[redis]'``).
"""
