-- The large-state job (bench/large-state.sh): one GROUP BY over many keys, so the keyed state
-- (one accumulator row per key) is several times the managed memory. ${INPUT} is substituted
-- by bench/large_state.py; the text runs unchanged on Flink and on Weir.

CREATE TABLE events (
  k  BIGINT,
  v  BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '${INPUT}',
  'format' = 'json'
);

CREATE TABLE sink (
  k  BIGINT,
  cnt  BIGINT,
  total  BIGINT,
  max_v  BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO sink
SELECT k, COUNT(*) AS cnt, SUM(v) AS total, MAX(v) AS max_v
FROM events
GROUP BY k;
