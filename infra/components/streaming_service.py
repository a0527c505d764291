"""The Fargate service behind the shared ALB: draining-safe deploys and autoscaling on active calls."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from infra.components.streaming_task import CONTAINER_NAME, CONTAINER_PORT, StreamingTask

METRICS_NAMESPACE = "VoiceAgent"
STREAMING_SERVICE_DIMENSION = "streaming"
# Paths the ALB forwards: the Media Stream, health, and the tenant API (tenant key required). Anything
# else (e.g. the operator-only /websocket-status) gets the listener's default 404.
PUBLIC_PATHS = ("/twilio-stream", "/ready", "/", "/api/*")
# The load balancer's and the container's health check: liveness. Not /ready: /ready answers 503 while
# a task is full or draining, and ECS replaces a task whose target is unhealthy, which would cut the live
# calls of a merely busy task. Admission is the task's own cap plus the webhook's capacity check.
HEALTH_CHECK_PATH = "/"


def active_calls_metric(env_name: str) -> cloudwatch.Metric:
    """The service's EMF gauge. Every task emits it on the same fixed interval and only then, so each task
    weighs the same in the Average over all samples: the Average is calls per task."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name="ActiveCalls",
        dimensions_map={"service": STREAMING_SERVICE_DIMENSION, "environment": env_name},
        statistic=cloudwatch.Stats.AVERAGE,
        period=Duration.minutes(1),
    )


class StreamingService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        task: StreamingTask,
        listener: elbv2.IApplicationListener,
        load_balancer_security_group: ec2.ISecurityGroup,
        extra_security_groups: list[ec2.ISecurityGroup],
        min_tasks: int,
        max_tasks: int,
        target_active_calls_per_task: int,
        scale_in_cooldown_s: int,
        deregistration_delay_s: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, description="Streaming tasks")
        self.security_group.add_ingress_rule(
            load_balancer_security_group, ec2.Port.tcp(CONTAINER_PORT), "ALB to streaming tasks"
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=task.definition,
            # desired_count is left to autoscaling so a deploy never resets a scaled-out service.
            min_healthy_percent=100,  # new tasks start before old ones drain: no capacity dip mid-deploy
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group, *extra_security_groups],
            assign_public_ip=False,
            health_check_grace_period=Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=vpc,
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service.load_balancer_target(container_name=CONTAINER_NAME, container_port=CONTAINER_PORT)],
            health_check=elbv2.HealthCheck(
                path=HEALTH_CHECK_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
            # Live calls keep their socket this long after a task is taken out of rotation; ECS waits for it
            # before SIGTERM. Draining ends early when a task has no connections left.
            deregistration_delay=Duration.seconds(deregistration_delay_s),
        )
        elbv2.ApplicationListenerRule(
            self,
            "Forward",
            listener=listener,
            priority=10,
            conditions=[elbv2.ListenerCondition.path_patterns(list(PUBLIC_PATHS))],
            action=elbv2.ListenerAction.forward([self.target_group]),
        )
        self._add_autoscaling(env_name, min_tasks, max_tasks, target_active_calls_per_task, scale_in_cooldown_s)

    def _add_autoscaling(
        self, env_name: str, min_tasks: int, max_tasks: int, target: int, scale_in_cooldown_s: int
    ) -> None:
        # min_tasks is the warm floor (a task needs 1-2 min to start). Scale-in is slow on purpose, and tasks
        # with live calls hold ECS task scale-in protection themselves, so scale-in only removes idle ones.
        scaling = self.service.auto_scale_task_count(min_capacity=min_tasks, max_capacity=max_tasks)
        scaling.scale_to_track_custom_metric(
            "ActiveCallsPerTask",
            metric=active_calls_metric(env_name),
            target_value=target,
            scale_out_cooldown=Duration.seconds(60),
            scale_in_cooldown=Duration.seconds(scale_in_cooldown_s),
        )
