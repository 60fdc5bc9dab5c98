"""The edge agent: radios → decoders → aggregator → durable outbox → MQTT."""
