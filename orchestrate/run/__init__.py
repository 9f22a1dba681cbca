"""Running a workflow: engine, scheduler, executor, retries, tools, cache and resume."""
