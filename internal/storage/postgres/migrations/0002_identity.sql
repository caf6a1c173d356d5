-- The identity data (scope maps, tokens, the admin password hash) and the
-- fleet records stored with it (connected registries, activations,
-- heartbeats, staging jobs), as keyed JSON values: storage.RecordLog.
-- Every write takes a new version from one sequence under an advisory
-- lock, so versions are in commit order; a deletion keeps its key with a
-- NULL value so that replicas catching up see it.
CREATE SEQUENCE identity_version;

CREATE TABLE identity_records (
  bucket  text COLLATE "C" NOT NULL,
  key     text COLLATE "C" NOT NULL,
  value   bytea,
  version bigint NOT NULL,
  PRIMARY KEY (bucket, key)
);
CREATE INDEX identity_records_by_version ON identity_records (version);
