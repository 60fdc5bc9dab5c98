"""Provisioning of gateways: configuration files and broker accounts for installers."""
