-- What pinning search_path costs per call, by itself: the same PL/pgSQL function (one cached
-- query, so the path is looked up) with and without `SET search_path = pg_catalog, pg_temp`.
-- A SET clause is what pylon_crdt's pin does (a GUC nest level, the value set, restored at
-- the end), plus the fmgr hook that applies it. Best of three rounds of 200,000 calls each.
CREATE FUNCTION pg_temp.unpinned() RETURNS int LANGUAGE plpgsql AS
  $$BEGIN RETURN (SELECT 1 FROM pg_catalog.pg_class WHERE false); END$$;
CREATE FUNCTION pg_temp.pinned() RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
  $$BEGIN RETURN (SELECT 1 FROM pg_catalog.pg_class WHERE false); END$$;
CREATE FUNCTION pg_temp.us_per_call(pinned boolean, calls int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := pg_catalog.clock_timestamp();
BEGIN
    IF pinned THEN
        PERFORM pg_catalog.count(pg_temp.pinned()) FROM pg_catalog.generate_series(1, calls);
    ELSE
        PERFORM pg_catalog.count(pg_temp.unpinned()) FROM pg_catalog.generate_series(1, calls);
    END IF;
    RETURN extract(epoch FROM pg_catalog.clock_timestamp() - started) * 1e6 / calls;
END
$$;
SELECT pg_temp.us_per_call(false, 20000), pg_temp.us_per_call(true, 20000);  -- warm up
SELECT pg_catalog.format('Pinning search_path: %s µs per call (%s µs per call with the pin, %s without; best of 3 × 200,000 calls)',
                         round((min(pinned) - min(unpinned))::numeric, 2),
                         round(min(pinned)::numeric, 2), round(min(unpinned)::numeric, 2))
  FROM (SELECT pg_temp.us_per_call(false, 200000) AS unpinned, pg_temp.us_per_call(true, 200000) AS pinned
          FROM pg_catalog.generate_series(1, 3)) AS rounds;
