-- Runs once before the other files, in the same database.
CREATE EXTENSION pylon_crdt;

-- SQLSTATE and message of the error a statement raises, so expected output shows both.
CREATE FUNCTION expect_error(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
