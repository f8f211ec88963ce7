"""Delivery of sessions to Matomo: the request mapping, the sink and the Reporting API client."""
