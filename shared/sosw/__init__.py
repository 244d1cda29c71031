"""sosw-stack: a sosw-compatible orchestrator of AWS Lambda workers on DynamoDB.

The public face is :class:`sosw.managers.task.TaskManager` (the seed's API); the modules beside it
are named after the concepts it is built from.
"""

__version__ = "0.1.0"
