-- Serializes enqueue and hand-back for one service and environment: a transaction-scoped
-- advisory lock per target, so concurrent requests supersede each other instead of colliding.
CREATE OR REPLACE FUNCTION click_deploy_target_lock(p_service_id bigint, p_environment text)
RETURNS void LANGUAGE sql AS $$
    -- Serializes enqueue and hand-back for one service and environment.
    SELECT pg_advisory_xact_lock(
        hashtextextended('click-deploy:target:' || p_service_id::text || ':' || p_environment, 0));
$$;
