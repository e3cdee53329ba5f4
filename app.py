#!/usr/bin/env python3
"""The btcpred CDK app: ``cdk synth -c env=dev|staging|prod`` (default dev).

The environment's row of :mod:`stacks.config` decides everything that differs between
environments (``-c account=… -c region=…`` override its account and region); cdk-nag's AWS
Solutions checks run on every synth and fail it on any finding that :mod:`stacks.nag` does not
acknowledge with a reason.
"""

from __future__ import annotations

import aws_cdk as cdk

from stacks.btcpred_stack import build

app = cdk.App()
build(app)
app.synth()
