"""Running the stack's parts on one machine: DynamoDB Local, with no AWS account and no Docker."""
