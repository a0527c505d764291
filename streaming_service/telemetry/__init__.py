"""Observability of the streaming service: CloudWatch EMF metrics, OpenTelemetry traces in X-Ray's id
format (continuing the webhook's trace), and the per-call hooks the session and engines report to."""
