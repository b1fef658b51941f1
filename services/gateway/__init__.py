"""HTTP gateway: the pawaRisk UI's events, history and health endpoints over the query service's gRPC API."""
