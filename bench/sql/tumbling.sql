-- inputs: events
-- The engine-core job (bench/engine-core.sh) as SQL: 1-minute tumbling event-time windows
-- (window TVF) over the events-N.jsonl file of bench/gen_events.py, COUNT(*) and SUM(amount)
-- per user, into a blackhole. ${EVENTS_PATH} is substituted by bench/sql.sh.

CREATE TABLE events (
  user_id  STRING,
  amount  DOUBLE,
  ts  BIGINT,
  ts_ltz AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR ts_ltz AS ts_ltz - INTERVAL '1' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${EVENTS_PATH}',
  'format' = 'json'
);

CREATE TABLE tumbling_sink (
  user_id  STRING,
  window_start  TIMESTAMP(3),
  window_end  TIMESTAMP(3),
  cnt  BIGINT,
  total  DOUBLE
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO tumbling_sink
SELECT user_id, window_start, window_end, COUNT(*) AS cnt, SUM(amount) AS total
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts_ltz), INTERVAL '1' MINUTE))
GROUP BY user_id, window_start, window_end;
