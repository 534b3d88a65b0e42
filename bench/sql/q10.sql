-- inputs: bid
-- Nexmark Query 10: Log to File System. Every bid into a filesystem sink partitioned by day
-- and minute. Sink DDL adapted: a bench-local directory (${SINK_DIR}, a fresh one per run),
-- JSON lines (Weir's filesystem sink writes no CSV yet), no partition-commit policy (files
-- become visible as their checkpoint commits, on both engines).

CREATE TABLE nexmark_q10 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  `dateTime`  TIMESTAMP(3),
  extra  VARCHAR,
  dt STRING,
  hm STRING
) PARTITIONED BY (dt, hm) WITH (
  'connector' = 'filesystem',
  'path' = 'file://${SINK_DIR}',
  'format' = 'json',
  'sink.rolling-policy.rollover-interval' = '1min'
);

INSERT INTO nexmark_q10
SELECT auction, bidder, price, `dateTime`, extra, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd'), DATE_FORMAT(`dateTime`, 'HH:mm')
FROM bid;
