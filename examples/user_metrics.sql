-- The SQL form of the registered `user-metrics` job: generated click events, event count
-- and amount per user in 1-minute tumbling event-time windows, printed as windows close.
--   weir run examples/user_metrics.sql
--   weir run examples/user_metrics.sql --explain

CREATE TABLE clicks (
  user_no   INT,
  cents     INT,
  seq       BIGINT,
  -- 20 ms of event time per event, starting 2026-01-01T00:00:00Z
  user_id   AS CONCAT('user_', CAST(user_no AS STRING)),
  amount    AS CAST(cents AS DOUBLE) / 100,
  ts        AS TO_TIMESTAMP_LTZ(1767225600000 + seq * 20, 3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '100000',
  'fields.user_no.min' = '0',
  'fields.user_no.max' = '7',
  'fields.cents.min' = '100',
  'fields.cents.max' = '9999',
  'fields.seq.kind' = 'sequence',
  'fields.seq.start' = '0',
  'fields.seq.end' = '99999'
);

CREATE TABLE user_metrics (
  window_start TIMESTAMP(3),
  window_end   TIMESTAMP(3),
  user_id      STRING,
  events       BIGINT,
  amount       DOUBLE
) WITH ('connector' = 'print');

INSERT INTO user_metrics
SELECT
  TUMBLE_START(ts, INTERVAL '1' MINUTE),
  TUMBLE_END(ts, INTERVAL '1' MINUTE),
  user_id,
  COUNT(*),
  SUM(amount)
FROM clicks
GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), user_id;
