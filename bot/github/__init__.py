"""The GitHub App: webhooks in (`POST /webhooks/github`), commands from PR comments, and
installation tokens for the API and for cloning. Payloads become our own models at the edge
(`models`); nothing past this package sees gidgethub types."""
