"""Commands people type (`/deploy …` in a PR comment, later Slack), parsed into values."""
