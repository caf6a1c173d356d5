package auth

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestRecordsInCallersBuckets: a package keeps records in a bucket it
// names, created on first use and loaded again at the next open; auth's
// own buckets are refused.
func TestRecordsInCallersBuckets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.db")
	st, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	type widget struct{ Size int }
	if err := st.Update(func(tx *Tx) error { return tx.PutRecord("widgets", "w1", widget{Size: 3}) }); err != nil {
		t.Fatalf("put a record in a new bucket: %v", err)
	}
	for _, own := range []string{bucketTokens, bucketScopeMaps, bucketSettings, ""} {
		err := st.Update(func(tx *Tx) error { return tx.PutRecord(own, "x", widget{}) })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("put a record in bucket %q: got %v, want ErrInvalid", own, err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	var got widget
	if err := st.Record("widgets", "w1", &got); err != nil || got.Size != 3 {
		t.Fatalf("record after reopening: got %+v, %v; want Size 3", got, err)
	}
	if err := st.Record("gadgets", "g1", &got); !errors.Is(err, ErrNotFound) {
		t.Errorf("record of a bucket never written: got %v, want ErrNotFound", err)
	}
	if err := st.Update(func(tx *Tx) error { return tx.DeleteRecord("gadgets", "g1") }); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete from a bucket never written: got %v, want ErrNotFound", err)
	}
}
