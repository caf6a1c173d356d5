package fs

import (
	"bytes"
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
)

// BenchmarkUploadVerify measures a blob upload streamed in one append and
// committed with digest verification: sha256 is hashed while the bytes
// are written (the running hash), sha512 is hashed again at commit.
func BenchmarkUploadVerify(b *testing.B) {
	pattern := []byte("outpost blob content, not very random, but hashing does not care. ")
	for _, size := range []struct {
		name string
		n    int
	}{{"1MiB", 1 << 20}, {"64MiB", 64 << 20}} {
		data := bytes.Repeat(pattern, size.n/len(pattern)+1)[:size.n]
		for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
			want := alg.FromBytes(data)
			b.Run(string(alg)+"/"+size.name, func(b *testing.B) {
				ctx := context.Background()
				s, err := New(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					id, err := s.StartUpload(ctx, "bench/app")
					if err != nil {
						b.Fatal(err)
					}
					if _, err := s.AppendUpload(ctx, "bench/app", id, 0, bytes.NewReader(data)); err != nil {
						b.Fatal(err)
					}
					n, err := s.CommitUpload(ctx, "bench/app", id, want)
					if err != nil {
						b.Fatal(err)
					}
					if n != int64(len(data)) {
						b.Fatalf("committed %d bytes, want %d", n, len(data))
					}
				}
			})
		}
	}
}

// BenchmarkDigest is the cost of the hash alone, for comparison with
// BenchmarkUploadVerify.
func BenchmarkDigest(b *testing.B) {
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		b.Run(string(alg)+"/1MiB", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				v := alg.Digester()
				if _, err := v.Hash().Write(data); err != nil {
					b.Fatal(err)
				}
				_ = v.Digest()
			}
		})
	}
}
