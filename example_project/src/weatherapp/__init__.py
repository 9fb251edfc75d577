"""weatherapp: a tiny weather client, the application the example tests exercise."""
