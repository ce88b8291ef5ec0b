-- Every query click-deploy runs, by name. Values only ever as $n parameters.
-- Loaded by pipeline/db/queries.py; a block starts with "-- name: NAME". The SQL functions
-- some of them call are in functions/<name>.sql, one a file (README.md in this folder).

-- name: migration_lock
-- Migrations and function files (pipeline/db/migrate.py): one process at a time.
SELECT pg_advisory_lock($1);

-- name: migration_unlock
SELECT pg_advisory_unlock($1);

-- name: schema_migrations_create
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());

-- name: schema_functions_create
-- The text of each function file (pipeline/db/functions) the database last received.
CREATE TABLE IF NOT EXISTS schema_functions (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());

-- name: migrations_applied
SELECT version, name, checksum FROM schema_migrations;

-- name: migration_record
INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- name: functions_applied
SELECT name, checksum FROM schema_functions;

-- name: function_record
INSERT INTO schema_functions (name, checksum) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now();

-- name: function_overloads
SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
WHERE p.proname = $1 AND p.pronamespace = current_schema()::regnamespace ORDER BY 1;

-- name: functions_forget
DELETE FROM schema_functions WHERE name = ANY ($1::text[]);

-- name: service_insert
INSERT INTO services (name, provider, repository, branch, root_dir, config)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *;

-- name: service_by_id
SELECT * FROM services WHERE id = $1;

-- name: service_by_id_for_update
SELECT * FROM services WHERE id = $1 FOR UPDATE;

-- name: service_by_name
SELECT * FROM services WHERE name = $1;

-- name: services_by_repository
SELECT * FROM services WHERE provider = $1 AND repository = $2 AND branch = $3 ORDER BY name;

-- name: services_list
SELECT * FROM services ORDER BY name;

-- name: service_update
UPDATE services SET
    provider   = coalesce($2, provider),
    repository = coalesce($3, repository),
    branch     = coalesce($4, branch),
    root_dir   = coalesce($5, root_dir),
    config     = coalesce($6, config),
    updated_at = now()
WHERE id = $1
RETURNING *;

-- name: service_delete
DELETE FROM services WHERE id = $1 RETURNING id;

-- name: service_pending_count
SELECT count(*) FROM deployments
WHERE service_id = $1 AND status IN ('queued', 'cloning', 'building', 'pushing');

-- name: target_lock
SELECT click_deploy_target_lock($1, $2);

-- name: enqueue
-- Supersedes the request waiting for the same target, inserts, notifies (functions/click_deploy_enqueue.sql).
SELECT * FROM click_deploy_enqueue($1, $2, $3, $4, $5, $6);

-- name: deployment_by_id
SELECT d.*, s.name AS service_name
FROM deployments d JOIN services s ON s.id = d.service_id
WHERE d.id = $1;

-- name: deployments_by_service
-- Newest first; $2 is the cursor (the last id of the previous page), $3 the page size.
SELECT d.*, s.name AS service_name
FROM deployments d JOIN services s ON s.id = d.service_id
WHERE d.service_id = $1 AND ($2::bigint IS NULL OR d.id < $2)
  AND ($4::text IS NULL OR d.status = $4)
ORDER BY d.id DESC
LIMIT $3;

-- name: deployment_set_status
-- Only from the states the state machine allows ($3); fenced by the lease token when given.
-- A final state frees the target, so the queue is woken for whatever waits behind it.
WITH updated AS (
    UPDATE deployments SET
        status           = $2,
        phase            = CASE WHEN $2 IN ('cloning', 'building', 'pushing') THEN $2 ELSE phase END,
        error            = coalesce($5, error),
        error_kind       = coalesce($6, error_kind),
        image            = coalesce($7, image),
        finished_at      = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled', 'superseded')
                                THEN now() ELSE finished_at END,
        worker_id        = CASE WHEN $2 IN ('cloning', 'building', 'pushing') THEN worker_id END,
        lease_token      = CASE WHEN $2 IN ('cloning', 'building', 'pushing') THEN lease_token END,
        lease_expires_at = CASE WHEN $2 IN ('cloning', 'building', 'pushing')
                                THEN lease_expires_at END,
        updated_at       = now()
    WHERE id = $1 AND status = ANY($3::text[]) AND ($4::uuid IS NULL OR lease_token = $4)
    RETURNING *
), woken AS (
    SELECT pg_notify('click_deploy_queue', id::text) FROM updated
    WHERE status IN ('succeeded', 'failed', 'cancelled', 'superseded')
)
SELECT updated.*, s.name AS service_name, (SELECT count(*) FROM woken) AS _notified
FROM updated JOIN services s ON s.id = updated.service_id;

-- name: deployment_set_progress
UPDATE deployments SET
    step = $3, steps_total = $4, progress_message = $5,
    phase = coalesce($6, phase), updated_at = now()
WHERE id = $1 AND ($2::uuid IS NULL OR lease_token = $2)
  AND status IN ('cloning', 'building', 'pushing')
RETURNING id;

-- name: claim
-- The oldest runnable deployment whose target has nothing active; concurrent claimers skip
-- rows another claimer holds. The unique index deployments_one_active is the backstop.
-- Its limit, $3, is written into the text by queue.claim_statement, for the plan cache.
WITH next AS (
    SELECT d.id FROM deployments d
    WHERE d.status = 'queued' AND d.run_at <= now()
      -- OFFSET 0 keeps this a lookup in deployments_one_active per candidate; as a join,
      -- the plan compared every candidate with every active deployment.
      AND NOT EXISTS (
          SELECT 1 FROM deployments a
          WHERE a.service_id = d.service_id AND a.environment = d.environment
            AND a.status IN ('cloning', 'building', 'pushing')
          OFFSET 0)
    ORDER BY d.run_at, d.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE deployments d SET
    status = 'cloning', phase = 'cloning', attempts = d.attempts + 1,
    worker_id = $1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => $2), heartbeat_at = now(),
    -- clock_timestamp(), not now(): the transaction may have begun before the previous
    -- deployment of this target finished; the row is only claimable after that commit.
    started_at = coalesce(d.started_at, clock_timestamp()), cancel_requested = false,
    step = NULL, steps_total = NULL, progress_message = NULL, updated_at = now()
FROM next WHERE d.id = next.id
RETURNING d.*, (SELECT name FROM services WHERE id = d.service_id) AS service_name,
    (SELECT coalesce(max(seq), 0) FROM deployment_logs l WHERE l.deployment_id = d.id)
        AS last_log_seq;

-- name: next_run_at
SELECT min(run_at) FROM deployments WHERE status = 'queued';

-- name: heartbeat
-- Extends the leases this worker still holds; a row missing from the answer is lost.
-- Rows are locked in id order, as job_writes locks them, so the two cannot deadlock.
WITH held AS (
    SELECT d.id FROM deployments d
    JOIN unnest($1::bigint[], $2::uuid[]) AS h (id, token) ON d.id = h.id
    WHERE d.id = ANY ($1::bigint[]) AND d.lease_token = h.token
      AND d.status IN ('cloning', 'building', 'pushing')
    ORDER BY d.id
    FOR UPDATE OF d
)
UPDATE deployments d SET
    heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $3)
FROM held
WHERE d.id = held.id
RETURNING d.id, d.cancel_requested;

-- name: hand_back
-- A running deployment goes back to the queue (retry, lost worker, shutdown) at $3, or
-- is superseded when a newer request for its target is already waiting.
WITH waiting AS (
    SELECT w.id FROM deployments w, deployments d
    WHERE d.id = $1 AND w.service_id = d.service_id AND w.environment = d.environment
      AND w.status = 'queued'
)
UPDATE deployments SET
    status = CASE WHEN EXISTS (SELECT 1 FROM waiting) THEN 'superseded' ELSE 'queued' END,
    superseded_by = (SELECT id FROM waiting),
    finished_at = CASE WHEN EXISTS (SELECT 1 FROM waiting) THEN now() END,
    run_at = $3::timestamptz, attempts = attempts - $5::integer,
    error = $4::text, error_kind = CASE WHEN $4::text IS NULL THEN error_kind ELSE 'transient' END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL,
    progress_message = $4::text, updated_at = now()
WHERE id = $1 AND status IN ('cloning', 'building', 'pushing')
  AND ($2::uuid IS NULL OR lease_token = $2)
RETURNING *;

-- name: expired_leases
SELECT id, service_id, environment, attempts, max_attempts, worker_id, heartbeat_at
FROM deployments
WHERE status IN ('cloning', 'building', 'pushing') AND lease_expires_at < now()
ORDER BY id
LIMIT 100
FOR UPDATE SKIP LOCKED;

-- name: cancel_queued
UPDATE deployments SET status = 'cancelled', finished_at = now(), updated_at = now(),
    progress_message = 'cancelled before it started'
WHERE id = $1 AND status = 'queued'
RETURNING *;

-- name: cancel_running
WITH flagged AS (
    UPDATE deployments SET cancel_requested = true, updated_at = now()
    WHERE id = $1 AND status IN ('cloning', 'building', 'pushing')
    RETURNING *
), told AS (
    SELECT pg_notify('click_deploy_cancel', id::text) FROM flagged
)
SELECT flagged.*, (SELECT count(*) FROM told) AS _notified FROM flagged;

-- name: notify_queue
SELECT pg_notify('click_deploy_queue', $1::bigint::text);

-- name: logs_append
-- A batch of lines in one round trip; seq numbers come from the writer. Followers are told
-- the newest seq in the same statement.
WITH inserted AS (
    INSERT INTO deployment_logs (deployment_id, seq, at, stream, line)
    SELECT $1, seq, at, stream, line
    FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[])
         AS l (seq, at, stream, line)
    RETURNING seq
)
SELECT pg_notify('click_deploy_logs', $1::bigint::text || ':' || max(seq)::text)
FROM inserted;

-- name: logs_last_seq
SELECT coalesce(max(seq), 0) FROM deployment_logs WHERE deployment_id = $1;

-- name: logs_after
SELECT seq, at, stream, line FROM deployment_logs
WHERE deployment_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3;

-- name: deployment_succeed
-- Success and the target's current image, in one statement.
WITH updated AS (
    UPDATE deployments SET
        status = 'succeeded', image = $3, digest = $4, finished_at = now(), updated_at = now(),
        worker_id = NULL, lease_token = NULL, lease_expires_at = NULL
    WHERE id = $1 AND status = 'pushing' AND ($2::uuid IS NULL OR lease_token = $2)
    RETURNING *
), current AS (
    INSERT INTO service_images (service_id, environment, deployment_id, image, digest)
    SELECT service_id, environment, id, image, digest FROM updated WHERE image IS NOT NULL
    ON CONFLICT (service_id, environment) DO UPDATE SET
        deployment_id = excluded.deployment_id, image = excluded.image,
        digest = excluded.digest, updated_at = now()
    RETURNING 1
), woken AS (
    SELECT pg_notify('click_deploy_queue', id::text) FROM updated
)
SELECT updated.*, s.name AS service_name,
       (SELECT count(*) FROM current) + (SELECT count(*) FROM woken) AS _written
FROM updated JOIN services s ON s.id = updated.service_id;

-- name: service_image
SELECT * FROM service_images WHERE service_id = $1 AND environment = $2;

-- name: steps_upsert
INSERT INTO deployment_steps
    (deployment_id, attempt, seq, kind, name, status, started_at, finished_at, seconds, detail)
SELECT $1, $2, s.seq, s.kind, s.name, s.status, s.started_at, s.finished_at, s.seconds, s.detail
FROM unnest($3::integer[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
            $8::timestamptz[], $9::double precision[], $10::text[])
     AS s (seq, kind, name, status, started_at, finished_at, seconds, detail)
ON CONFLICT (deployment_id, attempt, seq) DO UPDATE SET
    status = excluded.status, finished_at = excluded.finished_at,
    seconds = excluded.seconds, detail = excluded.detail;

-- name: steps_list
SELECT * FROM deployment_steps WHERE deployment_id = $1 ORDER BY attempt, seq;

-- name: rollback_candidate
-- The newest success of a target older than $3 whose image differs from digest $4.
SELECT d.*, s.name AS service_name
FROM deployments d JOIN services s ON s.id = d.service_id
WHERE d.service_id = $1 AND d.environment = $2 AND d.status = 'succeeded'
  AND d.id < $3 AND d.image IS NOT NULL AND d.digest IS NOT NULL
  AND d.digest IS DISTINCT FROM $4
ORDER BY d.id DESC
LIMIT 1;

-- name: job_writes
-- What a worker's jobs write at one moment, in one statement (one round trip, one commit):
-- their log lines, each deployment's followers told its newest seq; their steps; and their
-- state changes ($1-$8, one element per change). A change is fenced by the job's lease
-- token and allowed only along deployment_transitions (the trigger checks again);
-- `succeeded` also records the image as its target's current one, and a final state frees
-- the target, so the queue is woken for whatever waits behind it. Answers one row per
-- change that applied (the columns it can have changed), or one all-NULL row when none did.
-- A change may pass through several build states at once ($8: the last one it reached).
-- The statement is a function for its plan (functions/click_deploy_job_writes.sql).
SELECT * FROM click_deploy_job_writes($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                                      $14, $15, $16, $17, $18, $19, $20, $21, $22, $23);

-- REST API and pages

-- name: api_token_insert
INSERT INTO api_tokens (name, scope, token_hash, token_prefix)
VALUES ($1, $2, $3, $4)
RETURNING id, name, scope, token_prefix, created_at, last_used_at, revoked_at;

-- name: api_tokens_list
SELECT id, name, scope, token_prefix, created_at, last_used_at, revoked_at
FROM api_tokens ORDER BY name;

-- name: api_token_revoke
UPDATE api_tokens SET revoked_at = now()
WHERE name = $1 AND revoked_at IS NULL
RETURNING id;

-- name: api_token_by_hash
SELECT id, name, scope, token_prefix, created_at, last_used_at, revoked_at
FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL;

-- name: api_token_touch
-- At most once a minute per token, whatever the number of processes.
UPDATE api_tokens SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds');

-- Forges and reporting (bot/github, bot/reporting; migration 0006).

-- name: forge_delivery_seen
SELECT outcome FROM webhook_deliveries WHERE source = $1 AND delivery_id = $2;

-- name: forge_outbox_claim
-- Due rows of one target; a claimed row is hidden for $3 seconds (a reporter that dies
-- mid-send leaves it to be picked up again).
WITH due AS (
    SELECT id FROM outbox
    WHERE target = $1 AND delivered_at IS NULL AND available_at <= now()
    ORDER BY available_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET available_at = now() + make_interval(secs => $3), attempts = o.attempts + 1
FROM due WHERE o.id = due.id
RETURNING o.id, o.deployment_id, o.changes, o.attempts;

-- name: forge_outbox_done
-- Delivered, unless the deployment changed since the claim: then it stays pending.
UPDATE outbox SET delivered_at = now(), last_error = NULL
WHERE id = $1 AND changes = $2
RETURNING id;

-- name: deployment_is_final
SELECT status IN ('succeeded', 'failed', 'cancelled', 'superseded') FROM deployments
WHERE id = $1;

-- name: forge_outbox_later
-- Pending again at now + $2 s; $4 restarts the attempt count (a throttle or a change,
-- not a failure).
UPDATE outbox SET available_at = now() + make_interval(secs => $2), last_error = $3,
    attempts = CASE WHEN $4 THEN 0 ELSE attempts END
WHERE id = $1;

-- name: forge_outbox_give_up
UPDATE outbox SET delivered_at = now(), last_error = $2 WHERE id = $1;

-- name: forge_report_get
SELECT * FROM forge_reports WHERE deployment_id = $1 AND target = $2;

-- name: forge_report_save
INSERT INTO forge_reports (deployment_id, target, remote_id, sent_status, sent_at, reacted)
VALUES ($1, $2, $3, $4, now(), $5)
ON CONFLICT (deployment_id, target) DO UPDATE SET
    remote_id = coalesce(excluded.remote_id, forge_reports.remote_id),
    sent_status = excluded.sent_status, sent_at = now(),
    reacted = forge_reports.reacted OR excluded.reacted;

-- name: forge_pr_comment_ensure
INSERT INTO forge_pr_comments (target, repository, pr) VALUES ($1, $2, $3)
ON CONFLICT (target, repository, pr) DO NOTHING;

-- name: forge_pr_comment_lock
SELECT comment_id FROM forge_pr_comments
WHERE target = $1 AND repository = $2 AND pr = $3
FOR UPDATE;

-- name: forge_pr_comment_save
UPDATE forge_pr_comments SET comment_id = $4, updated_at = now()
WHERE target = $1 AND repository = $2 AND pr = $3;

-- name: forge_github_pr_deployments
-- The newest deployment of each service and environment a GitHub pull request caused.
SELECT DISTINCT ON (d.service_id, d.environment) d.*, s.name AS service_name
FROM deployments d JOIN services s ON s.id = d.service_id
WHERE d.trigger -> 'answer' ? 'github'
  AND d.trigger -> 'answer' -> 'github' ->> 'repo' = $1
  AND d.trigger -> 'answer' -> 'github' ->> 'pr' = $2::text
ORDER BY d.service_id, d.environment, d.id DESC;

-- name: forge_active_deployments
SELECT d.*, s.name AS service_name
FROM deployments d JOIN services s ON s.id = d.service_id
WHERE d.service_id = ANY ($1::bigint[]) AND d.environment = $2
  AND d.status IN ('queued', 'cloning', 'building', 'pushing')
ORDER BY d.id;

-- name: forge_environment_images
-- Every image a service's environment got (a preview's, to delete when its PR closes).
SELECT DISTINCT image FROM deployments
WHERE service_id = $1 AND environment = $2 AND status = 'succeeded' AND image IS NOT NULL;

-- name: forge_services_for_repository
SELECT * FROM services WHERE provider = $1 AND repository = $2 ORDER BY name;

-- name: forge_log_tail
SELECT seq, at, stream, line FROM (
    SELECT * FROM deployment_logs WHERE deployment_id = $1 ORDER BY seq DESC LIMIT $2
) tail ORDER BY seq;

-- Operations (bot/ops): what /metrics reports, read at scrape time in one statement.

-- name: ops_metrics
-- Deployments by state; the queue (queued rows, and how long the oldest runnable one has
-- waited); the build step of every finished attempt by runtime (its plan step's detail) and
-- result, counted into the histogram buckets $1 (upper bounds, ascending); webhook
-- deliveries by source and result (the first word of their outcome); the outbox by target.
SELECT
    (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)
     FROM (SELECT status, count(*) AS n FROM deployments GROUP BY status) s) AS by_status,
    (SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0)::float8
     FROM deployments WHERE status = 'queued' AND run_at <= now()) AS oldest_queued_seconds,
    (SELECT count(*) FROM deployments WHERE status = 'queued' AND run_at <= now())
        AS queued_runnable,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(runtime, result, bucket, n, total)), '[]')
     FROM (SELECT coalesce(p.detail, 'unknown') AS runtime,
                  CASE WHEN b.status = 'failed' THEN 'failed' ELSE 'succeeded' END AS result,
                  width_bucket(b.seconds, $1::float8[]) AS bucket,
                  count(*) AS n, sum(b.seconds) AS total
           FROM deployment_steps b
           LEFT JOIN deployment_steps p
               ON p.deployment_id = b.deployment_id AND p.attempt = b.attempt
              AND p.kind = 'pipeline' AND p.name = 'plan'
           WHERE b.kind = 'pipeline' AND b.name = 'build' AND b.seconds IS NOT NULL
           GROUP BY 1, 2, 3) h) AS build_seconds,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(source, result, n)), '[]')
     FROM (SELECT source,
                  coalesce(lower(substring(outcome FROM '^[A-Za-z_-]+')), 'none') AS result,
                  count(*) AS n
           FROM webhook_deliveries GROUP BY 1, 2) w) AS deliveries,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(
                target, pending, failing, given_up, retries, oldest_pending)), '[]')
     FROM (SELECT target,
                  count(*) FILTER (WHERE delivered_at IS NULL) AS pending,
                  count(*) FILTER (WHERE delivered_at IS NULL AND last_error IS NOT NULL)
                      AS failing,
                  count(*) FILTER (WHERE delivered_at IS NOT NULL AND last_error IS NOT NULL)
                      AS given_up,
                  coalesce(sum(greatest(attempts - 1, 0)), 0) AS retries,
                  coalesce(extract(epoch FROM now() - min(available_at)
                      FILTER (WHERE delivered_at IS NULL AND available_at <= now())), 0)::float8
                      AS oldest_pending
           FROM outbox GROUP BY target) o) AS reports;

-- Slack (bot/slack; migration 0007).

-- name: slack_message_get
SELECT * FROM slack_messages WHERE deployment_id = $1;

-- name: slack_message_insert
-- The first post of a deployment's message: from now on it is edited.
INSERT INTO slack_messages (deployment_id, channel, ts, sent_status, sent_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (deployment_id) DO NOTHING;

-- name: slack_message_steps
UPDATE slack_messages SET steps_ts = $2 WHERE deployment_id = $1;

-- name: slack_message_sent
UPDATE slack_messages SET sent_status = $2, sent_at = now(), tail_posted = tail_posted OR $3
WHERE deployment_id = $1;

-- GitLab (bot/gitlab, bot/reporting/gitlab.py; the forge tables of migration 0006).

-- name: forge_gitlab_mr_deployments
-- The newest deployment of each service and environment a GitLab merge request caused.
SELECT DISTINCT ON (d.service_id, d.environment) d.*, s.name AS service_name
FROM deployments d JOIN services s ON s.id = d.service_id
WHERE d.trigger -> 'answer' ? 'gitlab'
  AND d.trigger -> 'answer' -> 'gitlab' ->> 'project' = $1
  AND d.trigger -> 'answer' -> 'gitlab' ->> 'mr' = $2::text
ORDER BY d.service_id, d.environment, d.id DESC;

-- GitHub Deployments and the GitHub webhook's hot path (bot/github, bot/reporting/github.py;
-- migration 0010).

-- name: forge_delivery_store
-- A delivery (of forge $1) and the deployments it causes in one statement (its own transaction): their ids
-- in the order given ($5-$9, one element per deployment), or NULL when it was stored already.
SELECT click_deploy_forge_delivery($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- name: github_deployment_save
-- The GitHub Deployment made for a deployment ($2) and the state last sent to it ($3, NULL:
-- none yet); what is NULL here leaves what was stored.
INSERT INTO forge_reports (deployment_id, target, github_deployment_id, github_deployment_state)
VALUES ($1, 'github', $2, $3)
ON CONFLICT (deployment_id, target) DO UPDATE SET
    github_deployment_id = coalesce(excluded.github_deployment_id,
                                    forge_reports.github_deployment_id),
    github_deployment_state = coalesce(excluded.github_deployment_state,
                                       forge_reports.github_deployment_state);

-- name: github_deployments_live
-- The GitHub Deployments of a service's environment whose last status was success.
SELECT r.deployment_id, r.github_deployment_id
FROM forge_reports r JOIN deployments d ON d.id = r.deployment_id
WHERE d.service_id = $1 AND d.environment = $2 AND r.target = 'github'
  AND r.github_deployment_id IS NOT NULL AND r.github_deployment_state = 'success'
ORDER BY r.deployment_id;

-- name: release_live
SELECT * FROM releases WHERE service_id = $1 AND environment = $2 AND stopped_at IS NULL;

-- name: releases_live_for_service
SELECT * FROM releases WHERE service_id = $1 AND stopped_at IS NULL ORDER BY environment;

-- name: releases_live_previews
SELECT * FROM releases
WHERE service_id = $1 AND stopped_at IS NULL AND environment <> 'production'
ORDER BY started_at, id;

-- name: release_stop
UPDATE releases SET stopped_at = now() WHERE id = $1 AND stopped_at IS NULL RETURNING id;

-- name: release_insert
INSERT INTO releases (service_id, environment, deployment_id, target, image, digest, engine,
                      runs_as, url)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: deployment_set_live_url
UPDATE deployments SET live_url = $3, updated_at = now()
WHERE id = $1 AND ($2::uuid IS NULL OR lease_token = $2)
RETURNING id;

-- name: centrifugo_publisher_lock
-- The Centrifugo publisher's lock (bot/centrifugo), session-level: held by the one process
-- that publishes live logs, until its connection ends.
SELECT pg_try_advisory_lock(hashtextextended('click-deploy:centrifugo-publisher', 0));

-- name: deployments_running_ids
-- What the Centrifugo publisher takes up when it starts publishing.
SELECT id FROM deployments WHERE status IN ('cloning', 'building', 'pushing') ORDER BY id;

-- GitHub App from a manifest (pipeline/app_credentials.py) -------------------------------

-- name: github_app_insert
INSERT INTO github_app (app_id, slug, name, owner, html_url, client_id, secrets)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (singleton) DO NOTHING
RETURNING app_id;

-- name: github_app_get
SELECT app_id, slug, name, owner, html_url, client_id, secrets FROM github_app;

-- name: github_app_exists
SELECT EXISTS (SELECT 1 FROM github_app);
