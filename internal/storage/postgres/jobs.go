package postgres

import (
	"context"
	"fmt"
)

// jobsLock, with the schema and the job's name hashed, is the advisory
// lock key of a periodic job ("jobs" as a number).
const jobsLock = 0x6a6f6273

// Exclusive runs fn unless another process (a replica of the same root)
// is running the job called name: the job's session advisory lock is held
// on one connection while fn runs, so at most one replica runs it at a
// time, and a replica that dies mid-run releases it with its connection
// (the next run, on whichever replica comes first, takes over). It
// reports whether fn ran.
func (s *Store) Exclusive(ctx context.Context, name string, fn func(context.Context)) (bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: job %s: %w", name, err)
	}
	defer conn.Release()
	const key = `hashtext(current_schema() || '/' || $2)`
	var held bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, "+key+")", int32(jobsLock), name).Scan(&held); err != nil {
		return false, fmt.Errorf("postgres: job %s: take lock: %w", name, err)
	}
	if !held {
		return false, nil
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1, "+key+")", int32(jobsLock), name)
	}()
	fn(ctx)
	return true, nil
}
