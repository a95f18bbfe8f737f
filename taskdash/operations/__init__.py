"""Use cases shared by the JSON API and the dashboard: each surface parses its request, calls
one of these, and renders the answer its own way."""
