"""The benchmark of issue 6: our stack against sosw 0.7.51 on one DynamoDB Local (``make bench``).

``bench.run`` coordinates; ``bench.ours_runner`` and ``bench.sosw_runner`` each drive one stack in its
own process (sosw in its own virtualenv: both packages are named ``sosw``); ``bench.common`` is what
both runners share (stdlib and boto3 only); ``bench.invoke_endpoint`` is the loopback Lambda endpoint.
See bench/README.md.
"""
