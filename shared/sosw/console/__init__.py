"""What the ``sosw`` CLI prints: one output layer for every listing, and a task's attempts with their logs.

Not shipped in the Lambda layer (the CLI runs on a laptop or in CI, never in a function).
"""
