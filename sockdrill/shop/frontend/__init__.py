"""The front-end: web pages and the API gateway browsers and the load test talk to."""
