package storage

import "context"

// Record is one keyed value of a RecordLog. A nil Value is a deletion.
type Record struct {
	Bucket  string
	Key     string
	Value   []byte
	Version int64
}

// RecordLog keeps keyed records that several processes (the replicas of a
// root) share: the identity data of auth.Store and the fleet records
// stored with it. Every change gets a version from one increasing
// sequence, and writes are serialised across processes, so a process that
// has applied every record up to a version holds the log's state at that
// version.
type RecordLog interface {
	// Since returns the records changed after version since (every live
	// record when since is 0), in version order, and the version they
	// bring the reader to.
	Since(ctx context.Context, since int64) ([]Record, int64, error)
	// Write runs fn under the log's write lock, which is held across
	// processes: fn first gets the records changed after since (which the
	// caller applies before deciding), then returns the records to write.
	// They are stored together, or not at all when fn or the store fails.
	// Write returns the version the log is at afterwards.
	Write(ctx context.Context, since int64, fn func(changed []Record) ([]Record, error)) (int64, error)
	// Watch calls fn when another process may have written, and at least
	// every few seconds, until ctx ends.
	Watch(ctx context.Context, fn func())
}
