"""Grafana provisioning: datasource and dashboards as code for the command center."""
