package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// PurgeUploads removes the upload sessions last written before cutoff
// (the OCI distribution spec lets a registry expire them), skipping any
// a writer holds. Every replica may run it: a session is removed only by
// the one that locks it. syncToo is accepted for the interface the
// server purges through; the sessions of a sync engine expire by age
// here like any other. It returns the sessions removed and the bytes
// they held.
func (s *Store) PurgeUploads(ctx context.Context, cutoff time.Time, _ bool) (sessions int, bytes int64, err error) {
	prefix := s.prefix + "uploads/"
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix, Delimiter: aws.String("/")})
	var errs []error
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return sessions, bytes, fmt.Errorf("s3: list upload sessions: %w", err)
		}
		for _, cp := range page.CommonPrefixes {
			id := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), prefix), "/")
			n, err := s.purgeOne(ctx, id, cutoff)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if n >= 0 {
				sessions++
				bytes += n
			}
		}
	}
	return sessions, bytes, errors.Join(errs...)
}

// purgeOne removes session id if it is idle since before cutoff and not
// held, returning its size, or -1 when it stays.
func (s *Store) purgeOne(ctx context.Context, id string, cutoff time.Time) (int64, error) {
	if !validID(id) {
		return -1, nil
	}
	st, etag, err := s.loadAny(ctx, id)
	if err != nil || st == nil {
		return -1, err
	}
	if st.Updated.After(cutoff) || (st.Lock != "" && time.Now().Before(st.LockUntil)) {
		return -1, nil
	}
	st.Lock, st.LockUntil = lockToken(), time.Now().Add(s.lease)
	if _, err := s.store(ctx, id, st, etag); err != nil {
		if errors.Is(err, errConflict) {
			return -1, nil // written meanwhile: not abandoned
		}
		return -1, err
	}
	if err := s.discard(ctx, id, st); err != nil {
		return -1, err
	}
	return st.Size, nil
}
