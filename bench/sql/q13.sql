-- inputs: bid
-- Nexmark Query 13: Bounded Side Input Join. Each bid enriched from a side table by a
-- processing-time lookup join. Side input DDL adapted: bench/sql.sh writes side_input.jsonl
-- (keys 0-9999) next to the Nexmark files; the legacy 'connector.type' options became
-- today's 'connector'/'path'/'format'.

CREATE TABLE side_input (
  key BIGINT,
  `value` VARCHAR
) WITH (
  'connector' = 'filesystem',
  'path' = '${NEXMARK_DIR}/side_input.jsonl',
  'format' = 'json'
);

CREATE TABLE nexmark_q13 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  `dateTime`  TIMESTAMP(3),
  `value`  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q13
SELECT
    B.auction,
    B.bidder,
    B.price,
    B.`dateTime`,
    S.`value`
FROM (SELECT *, PROCTIME() as p_time FROM bid) B
JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S
ON mod(B.auction, 10000) = S.key;
