-- The writes of a worker's running deployments at one moment, in one statement: log lines,
-- steps and state changes (`job_writes` in queries.sql).
--
-- A function, not a plain statement, for its plan: the statement takes arrays, and for a
-- prepared statement PostgreSQL assumes 10 elements in each, so the plan that fits every
-- call looks dearer than a plan made for the call at hand, and with a few elements (one,
-- in a quiet worker) it plans every execution anew: some 0.3-0.4 ms of server time per
-- call, more than the work itself. The function keeps one plan (plan_cache_mode below).
-- A final state wakes the queue only when a request waits for the target it frees: every
-- worker listens on click_deploy_queue, and a NOTIFY for every finished deployment woke
-- all of them to find nothing new.
CREATE OR REPLACE FUNCTION click_deploy_job_writes(
    -- state changes, one element per deployment
    p_ids bigint[], p_tokens uuid[], p_statuses text[], p_errors text[],
    p_error_kinds text[], p_images text[], p_digests text[], p_phases text[],
    -- log lines
    p_log_ids bigint[], p_log_seqs bigint[], p_log_ats timestamptz[], p_log_streams text[],
    p_log_lines text[],
    -- steps
    p_step_ids bigint[], p_step_attempts integer[], p_step_seqs integer[], p_step_kinds text[],
    p_step_names text[], p_step_statuses text[], p_step_started timestamptz[],
    p_step_finished timestamptz[], p_step_seconds double precision[], p_step_details text[]
) RETURNS TABLE (
    id bigint, service_id bigint, environment text, status text, phase text, step integer,
    steps_total integer, progress_message text, error text, error_kind text, image text,
    digest text, worker_id text, lease_token uuid, lease_expires_at timestamptz,
    heartbeat_at timestamptz, cancel_requested boolean, finished_at timestamptz,
    updated_at timestamptz, _notified bigint
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
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
$$;
