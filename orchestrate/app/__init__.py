"""The application layer: an `Invocation` turned into a run, for the CLI and the Python API alike.

`execute_workflows` runs one or more workflows side by side; `execute_dataset` runs one
workflow over every row of a data file. Each assembles the engine (clients, shared
state, cache, provider batches, traces, approvals), runs it under signals when
asked, writes the run folder and its reports, and returns an outcome with the exit
code from the one table in `exits`. Printing the outcome is the caller's.
"""
