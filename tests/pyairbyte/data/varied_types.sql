-- One row per interesting value of the common PostgreSQL types, plus an all-NULL row: what a
-- PyAirbyte user reads into the DuckDB cache (expected values: varied_types.expected.json).
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE varied_types (
  id          bigint PRIMARY KEY,
  small       smallint,
  big         bigint,
  exact       numeric(20, 4),
  whole       numeric(12, 0),
  real_num    real,
  dbl         double precision,
  flag        boolean,
  day         date,
  at_local    timestamp,
  at_zoned    timestamptz,
  clock       time,
  label       varchar(50),
  body        text,
  doc         jsonb,
  ints        integer[],
  words       text[],
  ident       uuid,
  feeling     mood,
  blob        bytea,
  span        interval,
  addr        inet
);
INSERT INTO varied_types VALUES
  (1, -32768, 9223372036854775807, 12345678901234.5678, 123456789012, 1.5, -2.25, true,
   '2024-02-29', '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58+02', '13:14:15',
   'Mary X', E'multi\nline "quoted" \\ back', '{"a": [1, 2, {"b": null}]}', '{1,2,3}',
   '{"x","y z"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '\x0001ff', '1 day 02:03:04',
   '192.168.0.1'),
  (2, 0, 0, 0, 0, 0, 0, false, '1999-12-31', '1999-12-31 00:00:00', '1999-12-31 00:00:00+00',
   '00:00:00', '', 'héllo wörld ✓ 🐘', '[]', '{}', '{}', '00000000-0000-0000-0000-000000000000',
   'sad', '', '0', '::1'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL);
