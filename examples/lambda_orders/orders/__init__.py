"""The orders Lambda function: SQS messages in, receipts in S3, orders in DynamoDB.

``orders.handler.handler`` is the function's entry point; ``orders.model`` parses and signs
orders without any I/O.
"""
