-- A provider's answer merged into the state kept for a database or branch, in the statement that
-- writes it (one round trip, under the row lock the UPDATE takes): nested objects are merged key
-- by key, so that one role's password does not drop the others'; anything else in the patch wins.
CREATE FUNCTION merge_provider_state(kept jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  merged jsonb := kept;
  k text;
  v jsonb;
BEGIN
  FOR k, v IN SELECT * FROM jsonb_each(patch) LOOP
    IF jsonb_typeof(v) = 'object' AND jsonb_typeof(merged -> k) = 'object' THEN
      merged := jsonb_set(merged, ARRAY[k], merge_provider_state(merged -> k, v));
    ELSE
      merged := merged || jsonb_build_object(k, v);
    END IF;
  END LOOP;
  RETURN merged;
END
$$;
