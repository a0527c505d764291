"""The deploy rehearsal: synthesize the CDK app, then run what its templates say on one machine.

Every piece of the deployed shape is started from its template definition (Lambda asset, Handler,
runtime and environment; the task definition's command, environment, secrets, port and health check;
the HTTP API's routes; the ALB's listener rules), behind local stand-ins that speak AWS's protocols:
moto's Secrets Manager, an API-Gateway front door, an ALB front door, an ECS agent, TLS terminators in
front of Postgres and Redis. Then a Twilio call, signed as Twilio signs it, goes through all of it.
A wiring fault fails with the template resource and property at fault (`RehearsalFault`).
"""
