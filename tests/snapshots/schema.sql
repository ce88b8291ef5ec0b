CREATE TABLE api_tokens (
    id bigint NOT NULL DEFAULT nextval('api_tokens_id_seq'::regclass),
    name text NOT NULL,
    scope text NOT NULL,
    token_hash bytea NOT NULL,
    token_prefix text NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    last_used_at timestamp with time zone,
    revoked_at timestamp with time zone
);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_name_key UNIQUE (name);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (id);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scope_check CHECK ((scope = ANY (ARRAY['read'::text, 'deploy'::text, 'admin'::text])));
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash);
CREATE UNIQUE INDEX api_tokens_name_key ON public.api_tokens USING btree (name);
CREATE UNIQUE INDEX api_tokens_pkey ON public.api_tokens USING btree (id);
CREATE UNIQUE INDEX api_tokens_token_hash_key ON public.api_tokens USING btree (token_hash);

CREATE TABLE deployment_logs (
    deployment_id bigint NOT NULL,
    seq bigint NOT NULL,
    at timestamp with time zone NOT NULL DEFAULT now(),
    stream text NOT NULL DEFAULT 'stdout'::text,
    line text NOT NULL
);
ALTER TABLE deployment_logs ADD CONSTRAINT deployment_logs_deployment_id_fkey FOREIGN KEY (deployment_id) REFERENCES deployments(id) ON DELETE CASCADE;
ALTER TABLE deployment_logs ADD CONSTRAINT deployment_logs_pkey PRIMARY KEY (deployment_id, seq);
CREATE UNIQUE INDEX deployment_logs_pkey ON public.deployment_logs USING btree (deployment_id, seq);

CREATE TABLE deployment_steps (
    deployment_id bigint NOT NULL,
    attempt integer NOT NULL,
    seq integer NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    started_at timestamp with time zone NOT NULL DEFAULT now(),
    finished_at timestamp with time zone,
    seconds double precision,
    detail text
);
ALTER TABLE deployment_steps ADD CONSTRAINT deployment_steps_deployment_id_fkey FOREIGN KEY (deployment_id) REFERENCES deployments(id) ON DELETE CASCADE;
ALTER TABLE deployment_steps ADD CONSTRAINT deployment_steps_kind_check CHECK ((kind = ANY (ARRAY['pipeline'::text, 'build'::text])));
ALTER TABLE deployment_steps ADD CONSTRAINT deployment_steps_pkey PRIMARY KEY (deployment_id, attempt, seq);
ALTER TABLE deployment_steps ADD CONSTRAINT deployment_steps_status_check CHECK ((status = ANY (ARRAY['running'::text, 'done'::text, 'cached'::text, 'failed'::text])));
CREATE UNIQUE INDEX deployment_steps_pkey ON public.deployment_steps USING btree (deployment_id, attempt, seq);

CREATE TABLE deployment_transitions (
    from_status text NOT NULL,
    to_status text NOT NULL
);
ALTER TABLE deployment_transitions ADD CONSTRAINT deployment_transitions_pkey PRIMARY KEY (from_status, to_status);
CREATE UNIQUE INDEX deployment_transitions_pkey ON public.deployment_transitions USING btree (from_status, to_status);

CREATE TABLE deployments (
    id bigint NOT NULL DEFAULT nextval('deployments_id_seq'::regclass),
    service_id bigint NOT NULL,
    environment text NOT NULL DEFAULT 'production'::text,
    ref text,
    commit_sha text,
    status text NOT NULL DEFAULT 'queued'::text,
    trigger jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
    run_at timestamp with time zone NOT NULL DEFAULT now(),
    worker_id text,
    lease_token uuid,
    lease_expires_at timestamp with time zone,
    heartbeat_at timestamp with time zone,
    cancel_requested boolean NOT NULL DEFAULT false,
    superseded_by bigint,
    phase text,
    step integer,
    steps_total integer,
    progress_message text,
    image text,
    error text,
    error_kind text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    digest text,
    reports_to_slack boolean NOT NULL DEFAULT false,
    live_url text
);
ALTER TABLE deployments ADD CONSTRAINT deployments_environment_check CHECK ((environment <> ''::text));
ALTER TABLE deployments ADD CONSTRAINT deployments_max_attempts_check CHECK ((max_attempts >= 1));
ALTER TABLE deployments ADD CONSTRAINT deployments_pkey PRIMARY KEY (id);
ALTER TABLE deployments ADD CONSTRAINT deployments_service_id_fkey FOREIGN KEY (service_id) REFERENCES services(id) ON DELETE CASCADE;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'cloning'::text, 'building'::text, 'pushing'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text, 'superseded'::text])));
ALTER TABLE deployments ADD CONSTRAINT deployments_superseded_by_fkey FOREIGN KEY (superseded_by) REFERENCES deployments(id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX deployments_by_github_pr ON public.deployments USING btree (((((trigger -> 'answer'::text) -> 'github'::text) ->> 'repo'::text)), ((((trigger -> 'answer'::text) -> 'github'::text) ->> 'pr'::text)), id) WHERE ((trigger -> 'answer'::text) ? 'github'::text);
CREATE INDEX deployments_by_service ON public.deployments USING btree (service_id, id DESC);
CREATE INDEX deployments_by_status ON public.deployments USING btree (status, id DESC);
CREATE INDEX deployments_claimable ON public.deployments USING btree (run_at, id) WHERE (status = 'queued'::text);
CREATE INDEX deployments_leases ON public.deployments USING btree (lease_expires_at) WHERE (status = ANY (ARRAY['cloning'::text, 'building'::text, 'pushing'::text]));
CREATE UNIQUE INDEX deployments_one_active ON public.deployments USING btree (service_id, environment) WHERE (status = ANY (ARRAY['cloning'::text, 'building'::text, 'pushing'::text]));
CREATE UNIQUE INDEX deployments_one_queued ON public.deployments USING btree (service_id, environment) WHERE (status = 'queued'::text);
CREATE UNIQUE INDEX deployments_pkey ON public.deployments USING btree (id);
CREATE TRIGGER deployments_decide_slack BEFORE INSERT ON public.deployments FOR EACH ROW EXECUTE FUNCTION click_deploy_decide_slack();
CREATE TRIGGER deployments_outbox_forges_insert AFTER INSERT ON public.deployments FOR EACH ROW WHEN (((jsonb_typeof((new.trigger -> 'answer'::text)) = 'object'::text) AND ((new.trigger -> 'answer'::text) ?| ARRAY['github'::text, 'gitlab'::text]))) EXECUTE FUNCTION click_deploy_outbox_forges();
CREATE TRIGGER deployments_outbox_forges_update AFTER UPDATE ON public.deployments FOR EACH ROW WHEN (((jsonb_typeof((new.trigger -> 'answer'::text)) = 'object'::text) AND ((new.trigger -> 'answer'::text) ?| ARRAY['github'::text, 'gitlab'::text]) AND ((old.status IS DISTINCT FROM new.status) OR (old.step IS DISTINCT FROM new.step)))) EXECUTE FUNCTION click_deploy_outbox_forges();
CREATE TRIGGER deployments_outbox_slack_insert AFTER INSERT ON public.deployments FOR EACH ROW WHEN (new.reports_to_slack) EXECUTE FUNCTION click_deploy_outbox_slack();
CREATE TRIGGER deployments_outbox_slack_update AFTER UPDATE ON public.deployments FOR EACH ROW WHEN ((new.reports_to_slack AND ((old.status IS DISTINCT FROM new.status) OR (old.step IS DISTINCT FROM new.step)))) EXECUTE FUNCTION click_deploy_outbox_slack();
CREATE TRIGGER deployments_status_notify AFTER UPDATE ON public.deployments REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new FOR EACH STATEMENT EXECUTE FUNCTION click_deploy_status_notify();
CREATE TRIGGER deployments_transition BEFORE UPDATE OF status ON public.deployments FOR EACH ROW WHEN (((old.status IS DISTINCT FROM new.status) AND (NOT click_deploy_move_allowed(old.status, new.phase, new.status)))) EXECUTE FUNCTION deployments_refuse_transition();

CREATE TABLE forge_pr_comments (
    target text NOT NULL,
    repository text NOT NULL,
    pr integer NOT NULL,
    comment_id bigint,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE forge_pr_comments ADD CONSTRAINT forge_pr_comments_pkey PRIMARY KEY (target, repository, pr);
CREATE UNIQUE INDEX forge_pr_comments_pkey ON public.forge_pr_comments USING btree (target, repository, pr);

CREATE TABLE forge_reports (
    deployment_id bigint NOT NULL,
    target text NOT NULL,
    remote_id bigint,
    sent_status text,
    sent_at timestamp with time zone,
    reacted boolean NOT NULL DEFAULT false,
    github_deployment_id bigint,
    github_deployment_state text
);
ALTER TABLE forge_reports ADD CONSTRAINT forge_reports_deployment_id_fkey FOREIGN KEY (deployment_id) REFERENCES deployments(id) ON DELETE CASCADE;
ALTER TABLE forge_reports ADD CONSTRAINT forge_reports_pkey PRIMARY KEY (deployment_id, target);
CREATE UNIQUE INDEX forge_reports_pkey ON public.forge_reports USING btree (deployment_id, target);

CREATE TABLE github_app (
    singleton boolean NOT NULL DEFAULT true,
    app_id bigint NOT NULL,
    slug text NOT NULL,
    name text NOT NULL,
    owner text NOT NULL,
    html_url text NOT NULL,
    client_id text NOT NULL,
    secrets bytea NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE github_app ADD CONSTRAINT github_app_pkey PRIMARY KEY (singleton);
ALTER TABLE github_app ADD CONSTRAINT github_app_singleton_check CHECK (singleton);
CREATE UNIQUE INDEX github_app_pkey ON public.github_app USING btree (singleton);

CREATE TABLE outbox (
    id bigint NOT NULL DEFAULT nextval('outbox_id_seq'::regclass),
    deployment_id bigint,
    target text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    available_at timestamp with time zone NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    delivered_at timestamp with time zone,
    last_error text,
    changes integer NOT NULL DEFAULT 0
);
ALTER TABLE outbox ADD CONSTRAINT outbox_deployment_id_fkey FOREIGN KEY (deployment_id) REFERENCES deployments(id) ON DELETE CASCADE;
ALTER TABLE outbox ADD CONSTRAINT outbox_pkey PRIMARY KEY (id);
CREATE UNIQUE INDEX outbox_one_pending_forge ON public.outbox USING btree (deployment_id, target) WHERE ((delivered_at IS NULL) AND (target = ANY (ARRAY['github'::text, 'gitlab'::text])));
CREATE UNIQUE INDEX outbox_one_pending_slack ON public.outbox USING btree (deployment_id) WHERE ((delivered_at IS NULL) AND (target = 'slack'::text));
CREATE INDEX outbox_pending ON public.outbox USING btree (target, available_at) WHERE (delivered_at IS NULL);
CREATE UNIQUE INDEX outbox_pkey ON public.outbox USING btree (id);

CREATE TABLE releases (
    id bigint NOT NULL DEFAULT nextval('releases_id_seq'::regclass),
    service_id bigint NOT NULL,
    environment text NOT NULL,
    deployment_id bigint,
    target text NOT NULL,
    image text NOT NULL,
    digest text NOT NULL,
    engine text,
    runs_as text NOT NULL,
    url text,
    healthy boolean NOT NULL DEFAULT true,
    started_at timestamp with time zone NOT NULL DEFAULT now(),
    stopped_at timestamp with time zone
);
ALTER TABLE releases ADD CONSTRAINT releases_deployment_id_fkey FOREIGN KEY (deployment_id) REFERENCES deployments(id) ON DELETE SET NULL;
ALTER TABLE releases ADD CONSTRAINT releases_pkey PRIMARY KEY (id);
ALTER TABLE releases ADD CONSTRAINT releases_service_id_fkey FOREIGN KEY (service_id) REFERENCES services(id) ON DELETE CASCADE;
ALTER TABLE releases ADD CONSTRAINT releases_target_check CHECK ((target = ANY (ARRAY['docker'::text, 'swarm'::text, 'webhook'::text])));
CREATE INDEX releases_by_deployment ON public.releases USING btree (deployment_id);
CREATE UNIQUE INDEX releases_one_live ON public.releases USING btree (service_id, environment) WHERE (stopped_at IS NULL);
CREATE UNIQUE INDEX releases_pkey ON public.releases USING btree (id);

CREATE TABLE schema_functions (
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE schema_functions ADD CONSTRAINT schema_functions_pkey PRIMARY KEY (name);
CREATE UNIQUE INDEX schema_functions_pkey ON public.schema_functions USING btree (name);

CREATE TABLE schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE schema_migrations ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
CREATE UNIQUE INDEX schema_migrations_pkey ON public.schema_migrations USING btree (version);

CREATE TABLE service_images (
    service_id bigint NOT NULL,
    environment text NOT NULL,
    deployment_id bigint NOT NULL,
    image text NOT NULL,
    digest text,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE service_images ADD CONSTRAINT service_images_deployment_id_fkey FOREIGN KEY (deployment_id) REFERENCES deployments(id) ON DELETE CASCADE;
ALTER TABLE service_images ADD CONSTRAINT service_images_pkey PRIMARY KEY (service_id, environment);
ALTER TABLE service_images ADD CONSTRAINT service_images_service_id_fkey FOREIGN KEY (service_id) REFERENCES services(id) ON DELETE CASCADE;
CREATE UNIQUE INDEX service_images_pkey ON public.service_images USING btree (service_id, environment);

CREATE TABLE services (
    id bigint NOT NULL DEFAULT nextval('services_id_seq'::regclass),
    name text NOT NULL,
    provider text NOT NULL DEFAULT 'git'::text,
    repository text NOT NULL,
    branch text NOT NULL DEFAULT 'main'::text,
    root_dir text NOT NULL DEFAULT '.'::text,
    config jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE services ADD CONSTRAINT services_branch_check CHECK ((branch <> ''::text));
ALTER TABLE services ADD CONSTRAINT services_name_check CHECK ((name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'::text));
ALTER TABLE services ADD CONSTRAINT services_name_key UNIQUE (name);
ALTER TABLE services ADD CONSTRAINT services_pkey PRIMARY KEY (id);
ALTER TABLE services ADD CONSTRAINT services_provider_check CHECK ((provider = ANY (ARRAY['github'::text, 'gitlab'::text, 'git'::text])));
ALTER TABLE services ADD CONSTRAINT services_repository_check CHECK ((repository <> ''::text));
CREATE INDEX services_by_repository ON public.services USING btree (provider, repository, branch);
CREATE UNIQUE INDEX services_name_key ON public.services USING btree (name);
CREATE UNIQUE INDEX services_pkey ON public.services USING btree (id);
CREATE TRIGGER services_slack_changed AFTER UPDATE OF config ON public.services FOR EACH ROW WHEN (((old.config -> 'slack_channel'::text) IS DISTINCT FROM (new.config -> 'slack_channel'::text))) EXECUTE FUNCTION click_deploy_service_slack_changed();

CREATE TABLE slack_messages (
    deployment_id bigint NOT NULL,
    channel text NOT NULL,
    ts text NOT NULL,
    steps_ts text,
    tail_posted boolean NOT NULL DEFAULT false,
    sent_status text,
    sent_at timestamp with time zone
);
ALTER TABLE slack_messages ADD CONSTRAINT slack_messages_deployment_id_fkey FOREIGN KEY (deployment_id) REFERENCES deployments(id) ON DELETE CASCADE;
ALTER TABLE slack_messages ADD CONSTRAINT slack_messages_pkey PRIMARY KEY (deployment_id);
CREATE UNIQUE INDEX slack_messages_pkey ON public.slack_messages USING btree (deployment_id);

CREATE TABLE webhook_deliveries (
    source text NOT NULL,
    delivery_id text NOT NULL,
    event text NOT NULL,
    received_at timestamp with time zone NOT NULL DEFAULT now(),
    outcome text,
    deployment_ids bigint[] NOT NULL DEFAULT '{}'::bigint[]
);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (source, delivery_id);
CREATE UNIQUE INDEX webhook_deliveries_pkey ON public.webhook_deliveries USING btree (source, delivery_id);

CREATE OR REPLACE FUNCTION public.click_deploy_decide_slack()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    -- click_deploy_reports_to_slack written out: a SQL function called from PL/pgSQL is
    -- set up anew on every call, which costs more than the test itself.
    NEW.reports_to_slack := coalesce(jsonb_typeof(NEW.trigger -> 'answer') = 'object'
                                     AND NEW.trigger -> 'answer' ? 'slack', false)
        OR EXISTS (SELECT 1 FROM services
                   WHERE id = NEW.service_id
                     AND jsonb_typeof(config -> 'slack_channel') = 'string');
    RETURN NEW;
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_enqueue(p_service_id bigint, p_environment text, p_ref text, p_commit_sha text, p_trigger jsonb, p_max_attempts integer)
 RETURNS SETOF deployments
 LANGUAGE plpgsql
AS $function$
DECLARE
    new_id bigint := nextval(pg_get_serial_sequence('deployments', 'id'));
BEGIN
    PERFORM click_deploy_target_lock(p_service_id, p_environment);
    IF EXISTS (SELECT 1 FROM deployments
               WHERE service_id = p_service_id AND environment = p_environment
                 AND status = 'queued') THEN
        UPDATE deployments
        SET status = 'superseded', superseded_by = new_id, finished_at = now(),
            updated_at = now(), progress_message = 'superseded by deployment ' || new_id::text
        WHERE service_id = p_service_id AND environment = p_environment AND status = 'queued';
    END IF;
    RETURN QUERY
        INSERT INTO deployments (id, service_id, environment, ref, commit_sha, trigger, max_attempts)
        VALUES (new_id, p_service_id, p_environment, p_ref, p_commit_sha, p_trigger, p_max_attempts)
        RETURNING *;
    PERFORM pg_notify('click_deploy_queue', new_id::text);
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_forge_delivery(p_source text, p_delivery_id text, p_event text, p_outcome text, p_service_ids bigint[], p_environments text[], p_refs text[], p_commit_shas text[], p_triggers jsonb[], p_max_attempts integer)
 RETURNS bigint[]
 LANGUAGE plpgsql
AS $function$
DECLARE
    ids bigint[] := '{}';
    new_id bigint;
BEGIN
    INSERT INTO webhook_deliveries (source, delivery_id, event, outcome)
    VALUES (p_source, p_delivery_id, p_event, 'received')
    ON CONFLICT (source, delivery_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_service_ids), 0) LOOP
        SELECT id INTO new_id FROM click_deploy_enqueue(
            p_service_ids[i], p_environments[i], p_refs[i], p_commit_shas[i], p_triggers[i],
            p_max_attempts);
        ids := ids || new_id;
    END LOOP;
    UPDATE webhook_deliveries SET outcome = p_outcome, deployment_ids = ids
    WHERE source = p_source AND delivery_id = p_delivery_id;
    RETURN ids;
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_job_writes(p_ids bigint[], p_tokens uuid[], p_statuses text[], p_errors text[], p_error_kinds text[], p_images text[], p_digests text[], p_phases text[], p_log_ids bigint[], p_log_seqs bigint[], p_log_ats timestamp with time zone[], p_log_streams text[], p_log_lines text[], p_step_ids bigint[], p_step_attempts integer[], p_step_seqs integer[], p_step_kinds text[], p_step_names text[], p_step_statuses text[], p_step_started timestamp with time zone[], p_step_finished timestamp with time zone[], p_step_seconds double precision[], p_step_details text[])
 RETURNS TABLE(id bigint, service_id bigint, environment text, status text, phase text, step integer, steps_total integer, progress_message text, error text, error_kind text, image text, digest text, worker_id text, lease_token uuid, lease_expires_at timestamp with time zone, heartbeat_at timestamp with time zone, cancel_requested boolean, finished_at timestamp with time zone, updated_at timestamp with time zone, _notified bigint)
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
#variable_conflict use_column
BEGIN
    -- What a worker's jobs write at one moment, in one statement (one round trip, one commit):
    -- their log lines, each deployment's followers told its newest seq; their steps; and their
    -- state changes ($1-$8, one element per change). A change is fenced by the job's lease
    -- token and allowed only along deployment_transitions (the trigger checks again);
    -- `succeeded` also records the image as its target's current one, and a final state frees
    -- the target, so the queue is woken for whatever waits behind it. Answers one row per
    -- change that applied (the columns it can have changed), or one all-NULL row when none did.
    RETURN QUERY
    WITH moves AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[])
            AS m (id, token, status, error, error_kind, image, digest, phase)
    ), logs AS (
        INSERT INTO deployment_logs (deployment_id, seq, at, stream, line)
        SELECT * FROM unnest($9::bigint[], $10::bigint[], $11::timestamptz[], $12::text[],
                             $13::text[])
        RETURNING deployment_id, seq
    ), logs_told AS (
        SELECT pg_notify('click_deploy_logs', deployment_id::text || ':' || max(seq)::text)
        FROM logs GROUP BY deployment_id
    ), steps AS (
        INSERT INTO deployment_steps
            (deployment_id, attempt, seq, kind, name, status, started_at, finished_at, seconds,
             detail)
        SELECT * FROM unnest($14::bigint[], $15::integer[], $16::integer[], $17::text[],
                             $18::text[], $19::text[], $20::timestamptz[], $21::timestamptz[],
                             $22::double precision[], $23::text[])
        ON CONFLICT (deployment_id, attempt, seq) DO UPDATE SET
            status = excluded.status, finished_at = excluded.finished_at,
            seconds = excluded.seconds, detail = excluded.detail
        RETURNING 1
    ), locked AS (
        -- In id order, as the heartbeat locks them: several rows in one statement must not
        -- deadlock with another statement that holds some of them.
        SELECT d.id FROM deployments d WHERE d.id = ANY ($1::bigint[]) ORDER BY d.id FOR UPDATE
    ), updated AS (
        UPDATE deployments d SET
            status           = m.status,
            phase            = CASE WHEN m.status IN ('cloning', 'building', 'pushing')
                                    THEN m.status ELSE coalesce(m.phase, d.phase) END,
            error            = coalesce(m.error, d.error),
            error_kind       = coalesce(m.error_kind, d.error_kind),
            image            = CASE WHEN m.status = 'succeeded' THEN m.image
                                    ELSE coalesce(m.image, d.image) END,
            digest           = CASE WHEN m.status = 'succeeded' THEN m.digest ELSE d.digest END,
            finished_at      = CASE WHEN m.status IN ('succeeded', 'failed', 'cancelled', 'superseded')
                                    THEN now() ELSE d.finished_at END,
            worker_id        = CASE WHEN m.status IN ('cloning', 'building', 'pushing')
                                    THEN d.worker_id END,
            lease_token      = CASE WHEN m.status IN ('cloning', 'building', 'pushing')
                                    THEN d.lease_token END,
            lease_expires_at = CASE WHEN m.status IN ('cloning', 'building', 'pushing')
                                    THEN d.lease_expires_at END,
            updated_at       = now()
        FROM moves m JOIN locked USING (id)
        -- `d.id = ANY($1)` repeats the join so the rows are found by primary key whatever the
        -- table's statistics say; and the transition check is an array, not EXISTS, which the
        -- planner would turn into a join that looks rows up by status (every row in it).
        WHERE d.id = ANY ($1::bigint[]) AND d.id = m.id
          AND (m.token IS NULL OR d.lease_token = m.token)
          AND (d.status = ANY (ARRAY(SELECT t.from_status FROM deployment_transitions t
                                     WHERE t.to_status = m.status))
               -- Several build steps at once: forward through the build states to m.phase,
               -- then on to m.status (see click_deploy_steps_forward).
               OR click_deploy_steps_forward(d.status, m.phase, m.status))
        -- The columns a running deployment's row can change in; the job has the others.
        RETURNING d.id, d.service_id, d.environment, d.status, d.phase, d.step, d.steps_total,
            d.progress_message, d.error, d.error_kind, d.image, d.digest, d.worker_id,
            d.lease_token, d.lease_expires_at, d.heartbeat_at, d.cancel_requested,
            d.finished_at, d.updated_at
    ), current AS (
        INSERT INTO service_images (service_id, environment, deployment_id, image, digest)
        SELECT service_id, environment, id, image, digest FROM updated
        WHERE status = 'succeeded' AND image IS NOT NULL
        ON CONFLICT (service_id, environment) DO UPDATE SET
            deployment_id = excluded.deployment_id, image = excluded.image,
            digest = excluded.digest, updated_at = now()
        RETURNING 1
    ), woken AS (
        -- Only where a request waits for the freed target: the worker that freed it claims
        -- on its own, and other workers have nothing to gain from waking up.
        SELECT pg_notify('click_deploy_queue', u.id::text) FROM updated u
        WHERE u.status IN ('succeeded', 'failed', 'cancelled', 'superseded')
          AND EXISTS (SELECT 1 FROM deployments q
                      WHERE q.service_id = u.service_id AND q.environment = u.environment
                        AND q.status = 'queued')
    ), written AS (
        SELECT (SELECT count(*) FROM logs_told) + (SELECT count(*) FROM woken) AS notified
    )
    SELECT u.*, written.notified AS _notified FROM written LEFT JOIN updated u ON true;
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_move_allowed(p_from text, p_phase text, p_to text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT p_from || '>' || p_to = ANY (ARRAY[
               'queued>cloning', 'queued>superseded', 'queued>cancelled',
               'cloning>building', 'cloning>failed', 'cloning>cancelled', 'cloning>queued',
               'cloning>superseded',
               'building>pushing', 'building>failed', 'building>cancelled', 'building>queued',
               'building>superseded',
               'pushing>succeeded', 'pushing>failed', 'pushing>cancelled', 'pushing>queued',
               'pushing>superseded'])
        OR click_deploy_steps_forward(p_from, p_phase, p_to)
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_outbox_forges()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
DECLARE
    forge text;
BEGIN
    FOR forge IN
        SELECT key FROM jsonb_object_keys(NEW.trigger -> 'answer') AS key
        WHERE key IN ('github', 'gitlab')
    LOOP
        INSERT INTO outbox (deployment_id, target, kind) VALUES (NEW.id, forge, 'deployment')
        ON CONFLICT (deployment_id, target) WHERE delivered_at IS NULL
                                             AND target IN ('github', 'gitlab')
        DO UPDATE SET changes = outbox.changes + 1;
    END LOOP;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_outbox_slack()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO outbox (deployment_id, target, kind) VALUES (NEW.id, 'slack', 'deployment')
    ON CONFLICT (deployment_id) WHERE delivered_at IS NULL AND target = 'slack'
    DO UPDATE SET changes = outbox.changes + 1;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_reports_to_slack(p_trigger jsonb, p_service_id bigint)
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
    -- coalesce: without an answer object the test is NULL.
    SELECT coalesce(jsonb_typeof(p_trigger -> 'answer') = 'object'
                    AND p_trigger -> 'answer' ? 'slack', false)
        OR EXISTS (SELECT 1 FROM services
                   WHERE id = p_service_id
                     AND jsonb_typeof(config -> 'slack_channel') = 'string')
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_service_slack_changed()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE deployments
    SET reports_to_slack = click_deploy_reports_to_slack(trigger, service_id)
    WHERE service_id = NEW.id
      AND status NOT IN ('succeeded', 'failed', 'cancelled', 'superseded');
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_status_notify()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM pg_notify('click_deploy_status', n.id::text)
    FROM changed_new n JOIN changed_old o USING (id)
    WHERE o.status IS DISTINCT FROM n.status
       OR o.step IS DISTINCT FROM n.step
       OR o.progress_message IS DISTINCT FROM n.progress_message
       OR o.cancel_requested IS DISTINCT FROM n.cancel_requested;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_steps_forward(p_from text, p_phase text, p_to text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE
AS $function$
    -- p_from and p_phase are build states with p_phase later; p_to is p_phase itself or a
    -- state that p_phase may go to (the build states' exits are spelled out: IMMUTABLE,
    -- and the transitions table lists the same).
    SELECT coalesce(
        array_position(ARRAY['cloning', 'building', 'pushing'], p_from)
            < array_position(ARRAY['cloning', 'building', 'pushing'], p_phase)
        AND (p_to = p_phase
             OR (p_phase = 'pushing' AND p_to IN ('succeeded', 'failed', 'cancelled', 'queued',
                                                 'superseded'))
             OR (p_phase = 'building' AND p_to IN ('failed', 'cancelled', 'queued',
                                                  'superseded'))),
        false)
$function$;

CREATE OR REPLACE FUNCTION public.click_deploy_target_lock(p_service_id bigint, p_environment text)
 RETURNS void
 LANGUAGE sql
AS $function$
    -- Serializes enqueue and hand-back for one service and environment.
    SELECT pg_advisory_xact_lock(
        hashtextextended('click-deploy:target:' || p_service_id::text || ':' || p_environment, 0));
$function$;

CREATE OR REPLACE FUNCTION public.deployments_refuse_transition()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    RAISE EXCEPTION 'deployment % cannot go from % to %', OLD.id, OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END
$function$;
