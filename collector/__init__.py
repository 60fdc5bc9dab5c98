"""The collector: MQTT → validate + dedup → time-series store (and later, rules and alerts)."""
