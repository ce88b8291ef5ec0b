-- A forge's webhook delivery stored with the deployments it causes in one statement (one
-- round trip instead of BEGIN, insert, an enqueue per deployment, finish, COMMIT).
CREATE OR REPLACE FUNCTION click_deploy_forge_delivery(
    p_source text, p_delivery_id text, p_event text, p_outcome text,
    p_service_ids bigint[], p_environments text[], p_refs text[], p_commit_shas text[],
    p_triggers jsonb[], p_max_attempts integer
) RETURNS bigint[] LANGUAGE plpgsql AS $$
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
$$;
