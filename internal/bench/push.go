package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// pushSource makes unique blobs of one size almost for free: a shared,
// seeded random prefix and a 16-byte suffix that differs per blob. The
// SHA-256 state after the prefix is computed once, so the digest of each
// blob costs one block, and the load generator spends its CPU on the
// upload, not on hashing. Every blob is new to the registry, so no
// deduplication shortcut applies.
type pushSource struct {
	prefix []byte
	state  []byte // marshalled sha256 state after prefix
	nonce  uint64
	next   atomic.Uint64
}

const pushSuffixLen = 16

func newPushSource(seed uint64, size int64) (*pushSource, error) {
	if size <= pushSuffixLen {
		return nil, fmt.Errorf("push blob size %d is too small", size)
	}
	prefix := make([]byte, size-pushSuffixLen)
	stream(seed, "push").XORKeyStream(prefix, prefix)
	h := sha256.New()
	h.Write(prefix)
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	// The nonce keeps blobs unique when the tool is run twice against
	// the same registry.
	return &pushSource{prefix: prefix, state: state, nonce: uint64(time.Now().UnixNano())}, nil
}

// blob returns a new unique blob and its digest.
func (s *pushSource) blob() (pushPayload, string, error) {
	p := pushPayload{prefix: s.prefix}
	binary.BigEndian.PutUint64(p.suffix[:8], s.nonce)
	binary.BigEndian.PutUint64(p.suffix[8:], s.next.Add(1))
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(s.state); err != nil {
		return p, "", err
	}
	h.Write(p.suffix[:])
	return p, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// pushPayload is prefix followed by suffix.
type pushPayload struct {
	prefix []byte
	suffix [pushSuffixLen]byte
}

func (p pushPayload) Size() int64 { return int64(len(p.prefix) + pushSuffixLen) }

func (p pushPayload) Section(from, to int64) io.Reader {
	n := int64(len(p.prefix))
	switch {
	case to <= n:
		return bytes.NewReader(p.prefix[from:to])
	case from >= n:
		return bytes.NewReader(p.suffix[from-n : to-n])
	default:
		return io.MultiReader(bytes.NewReader(p.prefix[from:]), bytes.NewReader(p.suffix[:to-n]))
	}
}

// pushOp uploads one new blob per operation into repo, monolithically
// (chunk 0) or in chunks of chunk bytes.
func pushOp(tg *Target, src *pushSource, repo string, chunk int64) func(client int) opFunc {
	return func(int) opFunc {
		return func(ctx context.Context, _ int64, t *tally) error {
			p, d, err := src.blob()
			if err != nil {
				return err
			}
			if chunk > 0 {
				err = tg.pushChunked(ctx, repo, d, p, chunk)
			} else {
				err = tg.pushMonolithic(ctx, repo, d, p)
			}
			if err == nil {
				t.bytes += p.Size()
			}
			return err
		}
	}
}
