"""The Slack front end: `/deploy` slash commands, buttons, and one live message (with a
thread) per deployment, kept up to date from the outbox."""
