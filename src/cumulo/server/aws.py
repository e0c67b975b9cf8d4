"""AWS's wire protocols on Cumulo's own URL: requests that speak one go to the service that
answers it, everything else to Cumulo's routes. The Kinesis API (``X-Amz-Target:
Kinesis_20131202.*``) to streams, requests signed for S3 (SigV4 or SigV2, or addressed to a
bucket by host name) to storage's S3 API. So an AWS SDK, the aws command or rclone takes
Cumulo's URL as its endpoint for both."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.server.telemetry import ROUTE_KEY
from cumulo.storage.s3api.app import S3App, is_s3
from cumulo.streams.kinesis import KinesisApp, is_kinesis

__all__ = ["AwsDispatch"]


class AwsDispatch:
    def __init__(self, app: ASGIApp, domain: str | None = None) -> None:
        self.app = app
        self.domain = domain
        self.s3 = S3App(domain)
        self.kinesis = KinesisApp()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if is_kinesis(scope):
                scope[ROUTE_KEY] = "kinesis"  # the label of its requests' metrics
                await self.kinesis(scope, receive, send)
                return
            if is_s3(scope, self.domain):
                scope[ROUTE_KEY] = "s3"
                await self.s3(scope, receive, send)
                return
        await self.app(scope, receive, send)
