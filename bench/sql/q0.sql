-- inputs: bid
-- Nexmark Query 0: Pass through. Measures the monitoring overhead: bids in, bids out.
-- (Query text as in the nexmark/nexmark repository's nexmark-flink queries; its DDL is
-- nexmark_ddl.sql, prepended by bench/sql.sh.)

CREATE TABLE nexmark_q0 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  `dateTime`  TIMESTAMP(3),
  extra  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q0
SELECT auction, bidder, price, `dateTime`, extra FROM bid;
