"""The Kafka-facing machinery around Faust: the worker's app, its store, the commit protocol,
its Kafka clients, the broker profile and every Faust work-around (docs/architecture.md)."""
