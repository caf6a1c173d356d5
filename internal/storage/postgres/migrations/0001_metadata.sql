-- Repositories, blob links, manifests, tags and the change feed: the
-- tables of storage.Metadata. Names sort bytewise (COLLATE "C"), as the
-- registry API's pagination promises lexical order.
CREATE TABLE repositories (
  id         bigserial PRIMARY KEY,
  name       text COLLATE "C" NOT NULL UNIQUE,
  -- change_seq is the repository's last change feed sequence number;
  -- a write takes the row's lock to advance it, so the feed is one
  -- ordered sequence whichever replica writes.
  change_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE blobs (
  repo_id   bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
  digest    text NOT NULL,
  size      bigint NOT NULL,
  linked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (repo_id, digest)
);
CREATE INDEX blobs_by_digest ON blobs (digest);

CREATE TABLE manifests (
  repo_id       bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
  digest        text NOT NULL,
  media_type    text NOT NULL,
  artifact_type text NOT NULL DEFAULT '',
  subject       text,
  annotations   jsonb,
  blobs         text[] NOT NULL DEFAULT '{}',
  children      text[] NOT NULL DEFAULT '{}',
  body          bytea NOT NULL,
  put_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo_id, subject) WHERE subject IS NOT NULL;

CREATE TABLE tags (
  repo_id bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
  name    text COLLATE "C" NOT NULL,
  digest  text NOT NULL,
  PRIMARY KEY (repo_id, name)
);
CREATE INDEX tags_by_digest ON tags (repo_id, digest);

CREATE TABLE changes (
  repo_id bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
  seq     bigint NOT NULL,
  op      text NOT NULL,
  tag     text NOT NULL DEFAULT '',
  digest  text NOT NULL DEFAULT '',
  prev    text NOT NULL DEFAULT '',
  origin  text NOT NULL DEFAULT '',
  at      timestamptz NOT NULL,
  PRIMARY KEY (repo_id, seq)
);
