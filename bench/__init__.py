"""Wuye's benchmark suite (`make bench`, `python -m bench`).

Measurements, beside references taken in the same run on the same machine:
- rpc: GetEnterprise against PostgreSQL next to a bare grpcio echo server, same load generator;
- relay: outbox relay throughput and commit-to-Kafka latency next to the same client's bare
  produce;
- credit: a full recomputation of 10,000 enterprises, and event-to-grade latency;
- inspections: a draw over 10,000 projects and 500 inspectors, and an annual district report.
"""
