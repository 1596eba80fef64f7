"""The control room: a run's journeys, error budgets, alerts, topology and agent actions in a browser."""
