-- The GitHub App made from the manifest at /github/setup (bot/github/manifest.py): one row
-- at most. What names the App is kept in clear; its private key, webhook secret and OAuth
-- client secret are one Fernet token made with SECRETS_KEY (pipeline/app_credentials.py).
CREATE TABLE github_app (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    app_id     bigint NOT NULL,
    slug       text NOT NULL,
    name       text NOT NULL,
    owner      text NOT NULL,
    html_url   text NOT NULL,
    client_id  text NOT NULL,
    secrets    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
