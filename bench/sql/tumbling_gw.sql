-- inputs: events
-- tumbling.sql in the group-window syntax (GROUP BY TUMBLE(ts, size) with TUMBLE_START/END),
-- which Flink 2.3 still accepts (deprecated in favour of window TVFs) and Weir already
-- plans: the same job, so Weir has a figure while its window TVFs are in review.

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
SELECT user_id, TUMBLE_START(ts_ltz, INTERVAL '1' MINUTE) AS window_start,
       TUMBLE_END(ts_ltz, INTERVAL '1' MINUTE) AS window_end, COUNT(*) AS cnt, SUM(amount) AS total
FROM events
GROUP BY TUMBLE(ts_ltz, INTERVAL '1' MINUTE), user_id;
