-- The v1 ("legacy") store that deploy/examples/v1-to-v2.toml migrates: a
-- small shop, as its version-1 application wrote it.
--
--   sqlite3 v1.db < deploy/examples/make-v1-store.sql                 # 10000 users
--   sqlite3 -cmd ".parameter set @users 500000" v1.db < deploy/examples/make-v1-store.sql
--
-- Every user has 2 orders. What v2 changes (see v1-to-v2.toml):
--   users.email    mixed case, sometimes with spaces around it
--   users.deleted_at  soft-deleted accounts (every 10th user) stay behind
--   orders.packed  one little-endian binary record per order:
--                  int32 amount in cents, int16 quantity, currency code
--                  with a 1-byte length (string.unpack("<i4 i2 s1", ...));
--                  test orders have quantity 0 and are not migrated

CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL,
  full_name TEXT,            -- NULL when never entered
  country TEXT,              -- ISO 3166 code, NULL when unknown
  created INTEGER NOT NULL,  -- unix seconds
  deleted_at INTEGER         -- unix seconds; NULL for a live account
);

CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL,
  packed BLOB NOT NULL
);

-- The eight v1 records the orders cycle through (order id % 8):
--   k  amount_cents  quantity  currency
--   0          1000         1  EUR
--   1          2599         2  EUR
--   2         19900         1  USD
--   3           450        12  GBP
--   4          1500         0  EUR   (a test order: dropped by v2)
--   5        123456         3  JPY
--   6          -500         1  EUR   (a refund)
--   7     100000000       300  CHF
CREATE TEMP TABLE v1_records (k INTEGER PRIMARY KEY, packed BLOB NOT NULL);
INSERT INTO v1_records VALUES
  (0, x'e8030000010003455552'),
  (1, x'270a0000020003455552'),
  (2, x'bc4d0000010003555344'),
  (3, x'c20100000c0003474250'),
  (4, x'dc050000000003455552'),
  (5, x'40e201000300034a5059'),
  (6, x'0cfeffff010003455552'),
  (7, x'00e1f5052c0103434846');

WITH RECURSIVE n(i) AS (
  SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < coalesce(@users, 10000)
)
INSERT INTO users (id, email, full_name, country, created, deleted_at)
SELECT i,
       CASE i % 3
         WHEN 0 THEN 'User' || i || '@Example.org'
         WHEN 1 THEN ' user' || i || '@example.org '
         ELSE 'USER' || i || '@EXAMPLE.ORG'
       END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 'User Number ' || i END,
       CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN 'DE' WHEN 2 THEN 'FR' WHEN 3 THEN 'US' ELSE 'JP' END,
       1500000000 + i * 60,
       CASE WHEN i % 10 = 0 THEN 1600000000 + i END
FROM n;

WITH RECURSIVE n(i) AS (
  SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2 * coalesce(@users, 10000)
)
INSERT INTO orders (id, user_id, packed)
SELECT i, 1 + (i * 7919) % coalesce(@users, 10000), (SELECT packed FROM v1_records WHERE k = i % 8)
FROM n;

DROP TABLE v1_records;
