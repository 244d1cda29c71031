"""The TaskManager config in SSM: what every control function reads (Powertools Parameters, cached).

Lambda caps environment variables at 4 KB in total, and a few labourers with health metrics pass
that, so the functions get only the parameter's name. The JSON holds no deploy-time values (workers
the stack creates are named by function name), so its size is exact at synth: over 4 KB it moves to
the Advanced tier (SSM's Standard limit), over 8 KB synth fails instead of the deploy.
"""

from __future__ import annotations

import json
import sys

from aws_cdk import Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.config import ConfigError, StackConfig

__all__ = ["ConfigParameter"]

STANDARD_LIMIT_BYTES = 4096
ADVANCED_LIMIT_BYTES = 8192


class ConfigParameter(Construct):
    """``ConfigParameter(self, "Config", config=config).parameter_arn``"""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        self.name = config.config_parameter_name
        self.value = json.dumps(config.runtime_config(), sort_keys=True, separators=(",", ":"))
        self.parameter = self._build_parameter(self._tier(len(self.value.encode())))
        # Built from the name (not the resource's ARN) so that readers can be granted before it exists.
        self.parameter_arn = Stack.of(self).format_arn(
            service="ssm", resource="parameter", resource_name=self.name.lstrip("/")
        )

    def _tier(self, size: int) -> ssm.ParameterTier:
        if size > ADVANCED_LIMIT_BYTES:
            raise ConfigError(
                f"the TaskManager config for {self.name!r} is {size} bytes of JSON, over SSM's "
                f"{ADVANCED_LIMIT_BYTES}-byte limit: fewer or smaller worker settings (health_metrics) are needed"
            )
        if size > STANDARD_LIMIT_BYTES:
            print(
                f"note: the TaskManager config is {size} bytes: SSM Advanced tier (charged per parameter)",
                file=sys.stderr,
            )
            return ssm.ParameterTier.ADVANCED
        return ssm.ParameterTier.STANDARD

    def _build_parameter(self, tier: ssm.ParameterTier) -> ssm.StringParameter:
        return ssm.StringParameter(
            self,
            "Parameter",
            parameter_name=self.name,
            string_value=self.value,
            tier=tier,
            description="sosw TaskManager config (tables, labourers); read by the sosw Lambdas",
        )
