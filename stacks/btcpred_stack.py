"""One environment's stack: every construct of btcpred, wired.

One stack per environment rather than a stateful and a stateless stack: cross-stack exports
would lock the cache, stream and buckets to their consumers (an export in use cannot change),
and an S3 notification to a function in another stack makes a dependency cycle (the raw-history
bucket notifies the loader's queue, both here: docs/decisions.md 95). Stateful
resources are protected instead by removal policies, deletion protection and, in prod,
termination protection (docs/decisions.md 54).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import App, CfnOutput, Duration, Environment, Stack, Tags
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from stacks.apis import WEBSOCKET_STAGE, ApiGatewayAccount, ClientApis
from stacks.cache import FeatureCache
from stacks.config import EnvConfig, config_for
from stacks.data import EventStream
from stacks.database import HistoryDatabase
from stacks.functions import Functions
from stacks.ingestor import BINANCE_REST_URL, Ingestor
from stacks.loader import HistoryLoader
from stacks.monitoring import MonitoredResources, Monitoring
from stacks.nag import attach_checks
from stacks.network import Network
from stacks.secrets import AppSecrets
from stacks.signals import NAMESPACE, POLLER
from stacks.storage import HISTORY_PREFIX, MODEL_PREFIX, Buckets

__all__ = ["BtcpredStack", "build"]


class BtcpredStack(Stack):
    """Everything one environment runs (``btcpred-dev``, ``btcpred-staging``, ``btcpred-prod``)."""

    def __init__(self, scope: Construct, config: EnvConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            config.prefix,
            env=Environment(account=config.account, region=config.region),
            description=f"btcpred {config.name}: real-time BTC price prediction",
            termination_protection=config.deletion_protection,
            **kwargs,
        )
        self.config = config
        Tags.of(self).add("project", "btcpred")
        Tags.of(self).add("environment", config.name)
        self.network = Network(self, "Network", config=config)
        self.events = EventStream(self, "Events", config=config)
        self.buckets = Buckets(self, "Buckets", config=config)
        self.secrets = AppSecrets(self, "Secrets", config=config)
        self.cache = FeatureCache(self, "FeatureCache", config=config, network=self.network)
        self.database = HistoryDatabase(self, "History", config=config, network=self.network)
        self.ingestor = Ingestor(
            self,
            "Ingestor",
            config=config,
            network=self.network,
            stream=self.events.stream,
            api_key=self.secrets.binance_api_key,
        )
        self.functions = Functions(
            self, "Functions", config=config, network=self.network, cache=self.cache
        )
        fns = self.functions.functions
        self.apis = ClientApis(
            self,
            "Apis",
            config=config,
            websocket_fn=fns["websocket"],
            http_fn=fns["api"],
            account=ApiGatewayAccount(self, "ApiGatewayAccount"),
        )
        self._wire_aggregator(fns["aggregator"])
        self._wire_inference(fns["inference"])
        self._wire_clients(fns["websocket"], fns["api"])
        self._wire_poller(fns["poller"])
        self.loader = HistoryLoader(
            self,
            "HistoryLoader",
            config=config,
            function=fns["loader"],
            security_group=self.functions.own_security_groups["loader"],
            bucket=self.buckets.raw_history,
            database=self.database,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            resources=MonitoredResources(
                functions=fns,
                stream=self.events.stream,
                dlq=self.events.dlq,
                cache_name=self.cache.name,
                database=self.database.instance,
                websocket_api_id=self.apis.websocket_api.api_id,
                websocket_stage=WEBSOCKET_STAGE,
                http_api_id=self.apis.http_api.api_id,
                http_stage="$default",
                ingestor_cluster_name=self.ingestor.cluster.cluster_name,
                ingestor_service_name=self.ingestor.service.service_name,
                loader_queue=self.loader.queue,
                loader_dlq=self.loader.dlq,
            ),
        )
        self._outputs()

    def _wire_aggregator(self, fn: lambda_.Function) -> None:
        c = self.config
        fn.add_environment("POISON_RECORD_POLICY", "report")
        fn.add_event_source(
            sources.KinesisEventSource(
                self.events.stream,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=c.aggregator_batch_size,
                max_batching_window=Duration.seconds(c.aggregator_batching_window_s),
                parallelization_factor=c.aggregator_parallelization_factor,
                retry_attempts=c.aggregator_retry_attempts,
                max_record_age=Duration.seconds(c.aggregator_max_record_age_s),
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                on_failure=sources.SqsDlq(self.events.dlq),
            )
        )

    def _wire_inference(self, fn: lambda_.Function) -> None:
        c, models, history = self.config, self.buckets.models, self.buckets.predictions
        for name, value in {
            "MODEL_PATH": f"s3://{models.bucket_name}/{MODEL_PREFIX}",
            "PREDICTION_INTERVAL_SECONDS": f"{c.prediction_interval_s:g}",
            "PREDICTION_HISTORY_URI": f"s3://{history.bucket_name}/{HISTORY_PREFIX}",
            "WEBSOCKET_ENDPOINT": self.apis.callback_url,
        }.items():
            fn.add_environment(name, value)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[models.arn_for_objects(f"{MODEL_PREFIX}/*")]
            )
        )
        # ListBucket on the registry (which holds only models): without it S3 answers a
        # missing key with 403 instead of 404, and a missing current.json would read as a
        # permission error. A GetObject carries no s3:prefix, so no prefix condition.
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[models.bucket_arn])
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"],
                resources=[history.arn_for_objects(f"{HISTORY_PREFIX}/*")],
            )
        )
        self.functions.allow_posting(fn, self.apis.websocket_api.api_id, WEBSOCKET_STAGE)
        # Lambda's own async queue would retry a failed or throttled start (twice, for up to
        # 6 h): with reserved concurrency 2 a retry collides with the next minute's start.
        fn.configure_async_invoke(retry_attempts=0, max_event_age=Duration.seconds(60))
        events.Rule(
            self,
            "EveryMinute",
            description="Start the inference loop; the lease hands over between invocations",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[
                targets.LambdaFunction(fn, retry_attempts=0, max_event_age=Duration.seconds(60))
            ],
        )

    def _wire_poller(self, fn: lambda_.Function) -> None:
        c = self.config
        for name, value in {
            "BINANCE_REST_URL": BINANCE_REST_URL,
            "POLLER_INTERVAL_SECONDS": f"{c.poller_interval_s:g}",
            "FALLBACK_TTL_SECONDS": str(c.fallback_ttl_s),
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_SERVICE_NAME": POLLER,
        }.items():
            fn.add_environment(name, value)
        # As for inference: a late or retried start would only collide with the next minute's.
        fn.configure_async_invoke(retry_attempts=0, max_event_age=Duration.seconds(60))
        events.Rule(
            self,
            "PollEveryMinute",
            description="Start the fallback poller; it polls Binance REST until its time is up",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[
                targets.LambdaFunction(fn, retry_attempts=0, max_event_age=Duration.seconds(60))
            ],
        )

    def _wire_clients(self, websocket: lambda_.Function, api: lambda_.Function) -> None:
        interval = f"{self.config.prediction_interval_s:g}"
        websocket.add_environment(
            "WEBSOCKET_TOKEN_SECRET_ARN", self.secrets.websocket_token.secret_arn
        )
        websocket.add_environment("WEBSOCKET_ENDPOINT", self.apis.callback_url)
        websocket.add_environment("PREDICTION_INTERVAL_SECONDS", interval)
        api.add_environment("PREDICTION_INTERVAL_SECONDS", interval)
        self.secrets.websocket_token.grant_read(websocket)
        self.functions.allow_posting(websocket, self.apis.websocket_api.api_id, WEBSOCKET_STAGE)

    def _outputs(self) -> None:
        CfnOutput(self, "WebSocketUrl", value=self.apis.websocket_url)
        CfnOutput(self, "HttpApiUrl", value=self.apis.http_api.api_endpoint)
        CfnOutput(self, "ModelBucket", value=self.buckets.models.bucket_name)
        CfnOutput(self, "WebSocketTokenSecret", value=self.secrets.websocket_token.secret_arn)
        CfnOutput(self, "BinanceApiKeySecret", value=self.secrets.binance_api_key.secret_arn)
        CfnOutput(self, "StreamName", value=self.events.stream.stream_name)
        CfnOutput(self, "AlarmTopic", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "IngestorCluster", value=self.ingestor.cluster.cluster_name)
        CfnOutput(self, "IngestorService", value=self.ingestor.service.service_name)
        CfnOutput(self, "RawHistoryBucket", value=self.buckets.raw_history.bucket_name)
        CfnOutput(self, "LoaderDeadLetterQueue", value=self.loader.dlq.queue_url)


def build(app: App) -> BtcpredStack:
    """The environment named by ``app``'s context, with cdk-nag attached (what app.py runs)."""
    keys = ("env", "account", "region", "ingestor_tasks")
    context = {k: app.node.try_get_context(k) for k in keys}
    stack = BtcpredStack(app, config_for(context))
    attach_checks(app, stack)
    return stack
